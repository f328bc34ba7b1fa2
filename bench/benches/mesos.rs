//! Placeholder: filled in by the work of issue 3.
fn main() {}
