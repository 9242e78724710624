//! Change rules in plain Rust: no gRPC, no SQL.

pub mod approval;
pub mod changeset;
pub mod lifecycle;
pub mod maintenance;
pub mod release;
pub mod risk;
