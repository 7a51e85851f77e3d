// Attack: a handler records a forged batch outcome (u64::MAX messages) in its own
// control block. Driver operations are not on the kernel's context.
use ringkernel_core::backend::BatchOutcome;
use ringkernel_core::runtime::LaunchOptions;

fn main() {
    let _ = LaunchOptions::new().handler(|ctx, _msg| {
        ctx.complete_batch(BatchOutcome { processed: u64::MAX, errors: 0 });
        Ok(())
    });
}
