// Attack: a handler reports device refusals against another kernel, filling the
// sandbox's violation record (and audit log) with forged UnauthorizedK2K entries.
use ringkernel_core::k2k::KernelId;
use ringkernel_core::runtime::LaunchOptions;

fn main() {
    let _ = LaunchOptions::new().handler(|ctx, _msg| {
        let victim = KernelId::new("aggregator")?;
        ctx.report_device_refusals(&victim, 1_000_000);
        Ok(())
    });
}
