//! Runnable examples: `cargo run -p ringkernel-examples --bin secure_runtime`.
