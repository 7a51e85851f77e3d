//! Not a fuzz target: writes the seed corpora under `fuzz/corpus/` from genuine
//! artefacts (a sealed envelope and stream, a signed audit log, real reports).
//! `scripts/fuzz.sh --write-seeds` runs it once (`-runs=0`, with
//! `RINGKERNEL_FUZZ_SEEDS` naming the corpus directory); the fuzz loop does nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: {
    if let Ok(dir) = std::env::var("RINGKERNEL_FUZZ_SEEDS") {
        ringkernel_fuzz::seeds::write_all(std::path::Path::new(&dir)).expect("write seeds");
    }
}, |_data: &[u8]| {});
