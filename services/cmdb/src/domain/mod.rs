//! CMDB rules in plain Rust: no gRPC, no SQL.

pub mod ci;
pub mod classes;
