// Attack: kernel code turns its context into a driver, or makes one of its own. Only
// the runtime creates drivers, and it hands them to backends alone.
use ringkernel_core::backend::KernelDriver;
use ringkernel_core::runtime::LaunchOptions;

fn main() {
    let _ = LaunchOptions::new().handler(|ctx, _msg| {
        let _from_context: KernelDriver = ctx.clone().into();
        let _made = KernelDriver::default();
        Ok(())
    });
}
