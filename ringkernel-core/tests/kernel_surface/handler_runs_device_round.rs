// Attack: a handler runs a device round and so receives the round's key slots.
use ringkernel_core::runtime::LaunchOptions;

fn main() {
    let _ = LaunchOptions::new().handler(|ctx, _msg| {
        let _ = ctx.device_round(|round| {
            let _keys = round.sealing;
            Err(ringkernel_core::Error::Tampered)
        });
        Ok(())
    });
}
