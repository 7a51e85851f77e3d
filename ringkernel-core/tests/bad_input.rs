//! Bad input is a clear error, never an abort, and loses nothing: each test is one
//! misuse or attack on the configuration and launch surface, named by its class.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use ringkernel_core::Error;
use ringkernel_core::k2k::MAX_QUEUE_CAPACITY;
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder, RuntimeConfig};

/// Set in the child process that [`in_child`] starts.
const CHILD: &str = "RK_BAD_INPUT_CHILD";

/// Runs `case` in a child process (this test binary, filtered to `test_name`), so that
/// an abort fails this test instead of killing the whole test run.
fn in_child(test_name: &str, case: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        case();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the child process died ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child ran no test:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn invalid_config<T: std::fmt::Debug>(r: ringkernel_core::Result<T>, names: &str) {
    match r {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains(names), "{msg}"),
        other => panic!("expected InvalidConfig naming {names:?}, got {other:?}"),
    }
}

#[test]
fn resource_exhaustion_by_huge_queue_capacity_is_refused_not_an_abort() {
    const MAX: usize = MAX_QUEUE_CAPACITY;
    in_child(
        "resource_exhaustion_by_huge_queue_capacity_is_refused_not_an_abort",
        || {
            let rt = RuntimeBuilder::new().development().build().unwrap();
            invalid_config(
                rt.launch("k", LaunchOptions::new().queue_capacity(0)),
                "at least 1",
            );
            for cap in [usize::MAX, usize::MAX / 2 + 2, 1 << 40, MAX + 1] {
                invalid_config(
                    rt.launch("k", LaunchOptions::new().queue_capacity(cap)),
                    &MAX.to_string(),
                );
            }
            // Nothing of the refused launches is left behind; the id is still free.
            assert!(rt.kernels().is_empty());
            assert_eq!(rt.memory_in_use(), 0);
            let k = rt
                .launch("k", LaunchOptions::new().queue_capacity(MAX))
                .unwrap();
            k.terminate().unwrap();
            rt.shutdown().unwrap();

            for cap in [usize::MAX, MAX + 1] {
                invalid_config(
                    RuntimeBuilder::new()
                        .development()
                        .config(RuntimeConfig {
                            default_queue_capacity: cap,
                            ..RuntimeConfig::default()
                        })
                        .build(),
                    &MAX.to_string(),
                );
            }
        },
    );
}
