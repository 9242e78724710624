//! CMDB rules in plain Rust: no gRPC, no SQL.

pub mod attributes;
pub mod ci;
pub mod classes;
pub mod graph;
pub mod impact;
pub mod relationships;
