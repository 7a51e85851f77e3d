//! The two surfaces of a kernel: its handler's [`KernelContext`] offers user
//! operations only, and the driver operations (taking batches, recording outcomes,
//! device rounds, device refusals, termination marks) cannot be reached from it.
//!
//! Each file in `tests/kernel_surface/` is an attack a handler could make if the
//! context exposed driver operations; each must fail to compile, with the error saved
//! beside it (`TRYBUILD=overwrite` regenerates the `.stderr` files after a toolchain
//! change).

#[test]
fn handlers_cannot_reach_driver_operations() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/kernel_surface/*.rs");
}
