//! Criterion benchmarks for RingKernel; run with `cargo bench -p ringkernel-benches`.
//! Results and the machine they were taken on are in `docs/benchmarks.md`.
