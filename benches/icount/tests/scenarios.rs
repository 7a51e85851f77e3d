//! Every scenario runs to completion and passes its own checks outside valgrind (where
//! the client requests do nothing), so a broken scenario fails here, in the ordinary
//! test run, and not only in `scripts/icount.sh`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringkernel-icount");

#[test]
fn every_scenario_runs_and_passes_its_checks() {
    let list = Command::new(BIN)
        .arg("--list")
        .output()
        .expect("run --list");
    assert!(list.status.success(), "--list failed");
    let list = String::from_utf8(list.stdout).expect("utf-8");
    let names: Vec<&str> = list.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(
        names,
        [
            "seal_open_128B",
            "k2k_1000_all_layers",
            "audit_append_1000",
            "audit_verify_fixed",
            "sandbox_decision"
        ]
    );
    for name in names {
        let out = Command::new(BIN).arg(name).output().expect("run scenario");
        assert!(
            out.status.success(),
            "scenario {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn unknown_scenarios_and_bad_usage_are_refused() {
    let out = Command::new(BIN)
        .arg("no_such_scenario")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}
