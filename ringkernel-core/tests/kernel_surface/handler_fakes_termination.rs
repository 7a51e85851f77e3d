// Attack: a handler marks its kernel terminated (or failed, or panicked) while it keeps
// running, so status and the watchdog see a stopped kernel.
use ringkernel_core::runtime::LaunchOptions;

fn main() {
    let _ = LaunchOptions::new().handler(|ctx, _msg| {
        ctx.mark_terminated();
        ctx.stop_after_panic("not really");
        ctx.stop_with_error(&ringkernel_core::Error::Tampered);
        Ok(())
    });
}
