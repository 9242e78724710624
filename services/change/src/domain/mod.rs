//! Change rules in plain Rust: no gRPC, no SQL.

pub mod approval;
pub mod changeset;
pub mod lifecycle;
pub mod release;
pub mod risk;
