// Attack: a handler takes the next batch of its own mailbox, stealing messages meant
// for the backend's loop (and its accounting).
use ringkernel_core::runtime::LaunchOptions;

fn main() {
    let _ = LaunchOptions::new().handler(|ctx, _msg| {
        let _stolen = ctx.next_batch(64);
        Ok(())
    });
}
