//! Incident and problem rules in plain Rust: no gRPC, no SQL.

pub mod lifecycle;
pub mod priority;
pub mod problem;
pub mod text;
