#!/usr/bin/env bash
# The project's test command (README: "Run the tests"; CI: .ci/run calls exactly this).
#
# 1. Installs what the tests need and is missing on a fresh Debian/Ubuntu machine:
#    - Mesa's lavapipe (a real Vulkan driver on the CPU) for the wgpu backend tests,
#    - qpdf and poppler-utils (pdftotext) to validate exported PDF reports,
#    - the Noto CJK, Arabic and Hebrew fonts (fonts-noto-cjk, fonts-noto-core), the PDF
#      report's fallback fonts in the tests,
#    - Chromium, to render the HTML report headless and check its CSP,
#    - SoftHSM2, a PKCS#11 token for the keystore's token-held key-encryption key,
#    - rsyslog, a real syslog collector for the audit head shipper's tests,
#    - valgrind, whose callgrind counts the instructions of the hot paths,
#    - the NVRTC wheel from PyPI (libnvrtc) to compile the CUDA kernels without a GPU,
#    - compliance-trestle from PyPI, to validate the OSCAL export,
#    - cargo-deny from crates.io, to check licenses, bans and sources.
# 2. Runs the whole test suite: unit, integration and doc tests, examples, every
#    criterion bench once in test mode, the sandbox differential check at 10^6 cases,
#    the instruction counts of the hot paths against their checked-in baseline, and
#    (with a nightly toolchain) every fuzz target for 30 s.
# 3. Checks that none of them left anything behind in the temp directory: the suite runs
#    with TMPDIR set to a fresh private directory, which must be empty again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Directories this script makes, removed however it ends.
own_dirs=()
remove_own_dirs() { if [ ${#own_dirs[@]} -gt 0 ]; then rm -rf -- "${own_dirs[@]}"; fi; }
trap remove_own_dirs EXIT

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

# --- system packages -------------------------------------------------------------------
apt_pkgs=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || apt_pkgs+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || apt_pkgs+=(libvulkan1)
command -v qpdf >/dev/null 2>&1 || apt_pkgs+=(qpdf)
command -v pdftotext >/dev/null 2>&1 || apt_pkgs+=(poppler-utils)
noto_cjk=/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
noto_core=(/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf
           /usr/share/fonts/truetype/noto/NotoSansHebrew-Regular.ttf)
[ -f "$noto_cjk" ] || apt_pkgs+=(fonts-noto-cjk)
[ -f "${noto_core[0]}" ] && [ -f "${noto_core[1]}" ] || apt_pkgs+=(fonts-noto-core)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || apt_pkgs+=(chromium)
command -v softhsm2-util >/dev/null 2>&1 || apt_pkgs+=(softhsm2)
rsyslogd_bin() { command -v rsyslogd 2>/dev/null || { [ -x /usr/sbin/rsyslogd ] && echo /usr/sbin/rsyslogd; }; }
[ -n "$(rsyslogd_bin)" ] || apt_pkgs+=(rsyslog)
command -v valgrind >/dev/null 2>&1 || apt_pkgs+=(valgrind)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
    log "installing ${apt_pkgs[*]}"
    as_root apt-get update -qq
    # The tests start their own rsyslogd; the package's service may or may not start
    # (no init system in a container): either way it does not matter here.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}"
fi

# --- NVRTC (CUDA runtime compiler; no GPU needed) ---------------------------------------
nvrtc_lib() {
    python3 - <<'PY' 2>/dev/null
import importlib.util, os
spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
if spec and spec.submodule_search_locations:
    print(os.path.join(list(spec.submodule_search_locations)[0], "lib"))
PY
}
if [ -z "$(nvrtc_lib)" ]; then
    log "installing the NVRTC wheel (nvidia-cuda-nvrtc-cu12)"
    python3 -m pip install --quiet --disable-pip-version-check "nvidia-cuda-nvrtc-cu12>=12.4,<13"
fi
NVRTC_DIR="$(nvrtc_lib)"
if [ -n "$NVRTC_DIR" ]; then
    export LD_LIBRARY_PATH="$NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # NVRTC is installed: the CUDA compile test must run, not skip.
    export RINGKERNEL_REQUIRE_NVRTC=1
fi

# --- compliance-trestle (validates the OSCAL export) --------------------------------------
if ! python3 -c "import trestle.oscal.assessment_results" >/dev/null 2>&1; then
    log "installing compliance-trestle (OSCAL validation)"
    python3 -m pip install --quiet --disable-pip-version-check "compliance-trestle>=3"
fi
if python3 -c "import trestle.oscal.assessment_results" >/dev/null 2>&1; then
    # trestle is installed: the OSCAL test must validate, not skip.
    export RINGKERNEL_REQUIRE_TRESTLE=1
fi

# rsyslog is installed: the syslog shipper tests must run against it, not skip.
if [ -n "$(rsyslogd_bin)" ]; then
    export RINGKERNEL_REQUIRE_RSYSLOG=1
fi

# The Noto fonts are installed: the PDF tests of CJK, Arabic and Hebrew text must run,
# not skip.
if [ -f "$noto_cjk" ] && [ -f "${noto_core[0]}" ] && [ -f "${noto_core[1]}" ]; then
    export RINGKERNEL_REQUIRE_NOTO=1
fi

# Chromium is installed: the HTML report test must run, not skip.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    export RINGKERNEL_REQUIRE_CHROMIUM=1
fi

# SoftHSM2 is installed: the PKCS#11 keystore test must run against a real token, not
# skip. (The test initialises its own token in a temporary directory.)
if command -v softhsm2-util >/dev/null 2>&1; then
    export RINGKERNEL_REQUIRE_SOFTHSM=1
fi

# The full-disk tests mount a 1 MiB tmpfs themselves (root only) and unmount it when
# they end; where this machine can mount one, they must run, not skip.
tmpfs_probe="$(mktemp -d)"
if mount -t tmpfs -o size=64k tmpfs "$tmpfs_probe" 2>/dev/null; then
    umount "$tmpfs_probe"
    export RINGKERNEL_REQUIRE_TMPFS=1
fi
rmdir "$tmpfs_probe"

# In CI a missing Vulkan adapter is a failure, not a skip; a clean build gains nothing
# from incremental compilation, which only costs disk there.
if [ "${CI:-}" = "true" ]; then
    export RINGKERNEL_REQUIRE_WGPU=1
    export CARGO_INCREMENTAL=0
fi
# Mesa's Vulkan loader complains on every start without a runtime directory.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d)"
    own_dirs+=("$XDG_RUNTIME_DIR")
    export XDG_RUNTIME_DIR
fi

# Every test, doc test, bench and example cleans up after itself (tempfile::TempDir):
# they all run with a fresh, empty temp directory, checked at the end. Mode 0711: the
# mlock test's child runs as an unprivileged user from a copy inside it.
test_tmp="$(mktemp -d)"
own_dirs+=("$test_tmp")
chmod 0711 "$test_tmp"
export TMPDIR="$test_tmp"

# --- the suite -----------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, all features; warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

log "cargo doc (warnings, e.g. broken intra-doc links, are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

log "cargo deny check bans licenses sources (deny.toml: permissive licenses, crates.io only)"
if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install --quiet --locked cargo-deny --version 0.20.2
fi
cargo deny --locked check bans licenses sources

log "cargo package (the published crates: manifests and the files each one carries)"
published=(-p ringkernel-core -p ringkernel-shaders -p ringkernel-wgpu -p ringkernel-cuda -p ringkernel-cli)
cargo package --locked --allow-dirty --no-verify "${published[@]}"
# The shaders and the manual are included from inside their crates, so a packaged crate
# builds on its own: the shaders crate is verified (it has no dependencies), and the
# core carries the manual it includes.
cargo package --locked --allow-dirty -p ringkernel-shaders
cargo package --locked --allow-dirty --list -p ringkernel-core | grep -qx 'manual/threat-model.md'

log "cargo test (unit, integration, examples, benches in test mode)"
cargo test --workspace --all-targets --locked
# The CLI enables ringkernel-core's `pkcs11` feature, so the workspace run above
# builds the core with it and runs the token test (keystore_pkcs11) against SoftHSM2.

log "ringkernel-core without its default features (no PDF, no HTML export)"
cargo check -p ringkernel-core --no-default-features --all-targets --locked
cargo test -p ringkernel-core --no-default-features --locked --test compliance

# The workspace run above checks 20,000 cases; this reruns the same test binary (no
# rebuild: the same packages and features) at 10^6, with debug assertions on, in about
# a minute. A release build of it alone took longer than the run (docs/reliability.md).
log "sandbox differential: 10^6 generated cases against the naive matcher"
RINGKERNEL_DIFFERENTIAL_CASES=1000000 \
    cargo test --workspace --locked --test sandbox_differential -- --nocapture

# The workspace run above kills its child 5 times per test; this reruns the same test
# binary (no rebuild, as above) with 100 kill -9 trials during audit appends and 100
# during key rotation, in about 65 s (docs/reliability.md).
log "kill -9 trials: 100 during audit appends, 100 during key rotation"
RINGKERNEL_KILL_TRIALS=100 \
    cargo test --workspace --locked --test kill_trials -- --nocapture kill_9_

log "cargo test --doc"
cargo test --workspace --doc --locked

log "examples (each exits non-zero if what it demonstrates does not hold)"
for bin in secure_runtime sandbox_violations password_derived_keys compliance_report audit_k2k_summaries; do
    cargo run -q --locked -p ringkernel-examples --bin "$bin" > /dev/null
    echo "example $bin: ok"
done
# The main example restarted in its state directory: the second run must reopen the
# keystore and continue the same signed audit chain.
state_dir="$(mktemp -d)"
RINGKERNEL_STATE_DIR="$state_dir" cargo run -q --locked -p ringkernel-examples --bin secure_runtime > /dev/null
second_run="$(RINGKERNEL_STATE_DIR="$state_dir" cargo run -q --locked -p ringkernel-examples --bin secure_runtime)"
if grep -q "continued the audit log of an earlier run" <<< "$second_run"; then
    echo "example secure_runtime, run twice in one state directory: continued the log"
else
    echo "example secure_runtime did not continue its audit log on the second run" >&2
    rm -rf "$state_dir"
    exit 1
fi
rm -rf "$state_dir"
# The main example on the GPU path: required in CI (lavapipe), tried elsewhere.
wgpu_example=(cargo run -q --locked -p ringkernel-examples --bin secure_runtime -- --backend wgpu)
if [ "${RINGKERNEL_REQUIRE_WGPU:-}" = "1" ]; then
    "${wgpu_example[@]}" > /dev/null
    echo "example secure_runtime --backend wgpu: ok"
elif "${wgpu_example[@]}" > /dev/null 2>&1; then
    echo "example secure_runtime --backend wgpu: ok"
else
    echo "example secure_runtime --backend wgpu: SKIPPED (no usable wgpu adapter; run it to see why)"
fi
# A short soak of the main example's workload (keys rotated every second, readings
# flowing): fails on a failed open, a lost reading or RSS growth. The one-hour form is
# `soak --seconds 3600` (docs/reliability.md).
if soak_out="$(cargo run -q --locked -p ringkernel-examples --bin soak -- --seconds 20)"; then
    echo "example soak (20 s): $(grep -F 'readings:' <<< "$soak_out" | sed 's/^ *//')"
else
    echo "$soak_out" >&2
    exit 1
fi

# --- instruction counts ---------------------------------------------------------------------
# Each scenario of benches/icount under callgrind (a release build), against
# benches/icount-baseline.txt: a rise over 10% fails unless the commit updates the
# baseline (scripts/icount.sh --update) and says why (docs/benchmarks.md).
log "instruction counts (scripts/icount.sh: callgrind, against benches/icount-baseline.txt)"
bash scripts/icount.sh

# --- fuzzing (nightly only) ------------------------------------------------------------------
# Every cargo-fuzz target for 30 s from its seed corpus; without a nightly toolchain the
# script says "fuzzing: SKIPPED (...)" and this step passes.
log "fuzzing (scripts/fuzz.sh: every target for ${FUZZ_SECONDS:-30} s)"
bash scripts/fuzz.sh

# --- nothing left behind ------------------------------------------------------------------
# Checked once everything above has ended: by then cargo, rustc, rustdoc, the linker,
# Chromium and the examples have removed their own temporary files too.
log "temp directory: nothing left behind"
leftovers="$(find "$test_tmp" -mindepth 1 -maxdepth 1 -printf '  %P\n' | sort)"
if [ -n "$leftovers" ]; then
    echo "the tests or examples left these in their temp directory (TMPDIR=$test_tmp):" >&2
    echo "$leftovers" >&2
    exit 1
fi
echo "temp directory empty"
