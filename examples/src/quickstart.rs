//! Quickstart (being built).
fn main() {}
