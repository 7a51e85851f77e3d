// Attack: kernel code builds a driver of its own from its context.
use ringkernel_core::backend::KernelDriver;
use ringkernel_core::runtime::LaunchOptions;

fn main() {
    let _ = LaunchOptions::new().handler(|ctx, _msg| {
        let _driver = KernelDriver::new(ctx.clone());
        let _driver: KernelDriver = ctx.clone().into();
        Ok(())
    });
}
