#!/usr/bin/env bash
# The CUDA backend on a real NVIDIA GPU, in one go: its tests with a device required,
# then the CUDA half of the GPU benches, then a markdown table for docs/benchmarks.md.
#
#   bash scripts/gpu-check.sh
#
# Exit status:
#   0  every CUDA test passed (RINGKERNEL_REQUIRE_CUDA=1: none may skip) and the
#      benches ran; the table is printed at the end
#   1  a test or a bench failed or ran past its time limit, or libcuda loads but does
#      not work
#   2  something the check needs is missing (cargo, or python3 with pip for NVRTC)
#   3  no NVIDIA driver (libcuda) on this machine: nothing was built or run
#
# What it does:
# 1. Looks for the driver first (libcuda, as cudarc loads it) and stops with status 3
#    when there is none, within a second.
# 2. Finds an NVRTC (libnvrtc) no newer than the driver: the backend compiles its
#    kernels to PTX at run time, and a driver refuses PTX from a newer CUDA
#    (CUDA_ERROR_UNSUPPORTED_PTX_VERSION). It uses the nvidia-cuda-nvrtc-cu12 wheel as
#    scripts/test.sh does when the installed one fits, or else installs the newest
#    wheel the driver supports into target/gpu-check/nvrtc (nothing global changes).
# 3. RINGKERNEL_REQUIRE_CUDA=1 cargo test --release -p ringkernel-cuda: the host-side
#    cipher and NVRTC tests and the conformance suite on the GPU (tests/conformance.rs).
#    --release so that the benches below reuse the same optimised dependencies.
# 4. cargo bench -p ringkernel-benches --bench gpu -- cuda_: only the CUDA benches
#    (STREAM seal/open at 64 KiB, 1 MiB and 16 MiB against the CPU in the same run,
#    and persistent-kernel messages/s with a plain and a sealed control block).
#
# Time: the tests run under a 180 s limit and the benches under 150 s (criterion: 14
# figures of 0.5 s warm-up and 3 s measurement, about a minute), so the check stays
# under five minutes once the release build is there; a cold target directory adds
# that build first. Everything but the table goes to stderr, so
#   bash scripts/gpu-check.sh > cuda-figures.md
# keeps just the table; the logs and the table are also in target/gpu-check/.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }
fail() { printf 'gpu-check: %s\n' "$2" >&2; exit "$1"; }

# --- 1. the driver ---------------------------------------------------------------------
# The driver's CUDA version as "major minor", or the reason there is none.
driver_version() {
    python3 - <<'PY'
import ctypes, sys
errors = []
for name in ("libcuda.so.1", "libcuda.so"):
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        errors.append(str(e))
        continue
    v = ctypes.c_int(0)
    status = lib.cuDriverGetVersion(ctypes.byref(v))
    if status != 0:
        print(f"{name} loads, but cuDriverGetVersion returns CUresult {status}")
        sys.exit(4)
    print(v.value // 1000, (v.value % 1000) // 10)
    sys.exit(0)
print("; ".join(errors))
sys.exit(3)
PY
}

command -v python3 >/dev/null 2>&1 || fail 2 "python3 is needed (to load libcuda and to install NVRTC)"
status=0
version="$(driver_version 2>&1)" || status=$?
case $status in
    0) ;;
    3) fail 3 "no NVIDIA driver (libcuda) found: ${version}. This check needs a machine with an NVIDIA GPU and its driver; scripts/test.sh covers what runs without one." ;;
    *) fail 1 "the NVIDIA driver is there but does not work: ${version}" ;;
esac
read -r cuda_major cuda_minor <<<"$version"
log "NVIDIA driver for CUDA $cuda_major.$cuda_minor"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
fi
command -v cargo >/dev/null 2>&1 || fail 2 "cargo is needed (https://rustup.rs)"

out_dir="$PWD/target/gpu-check"
mkdir -p "$out_dir"
started=$SECONDS

# --- 2. NVRTC no newer than the driver ----------------------------------------------------
# The newest wheel the driver runs PTX from: 12.x up to the driver's minor version.
if [ "$cuda_major" -ge 13 ]; then
    want="nvidia-cuda-nvrtc-cu12>=12.4,<13"
elif [ "$cuda_major" -eq 12 ]; then
    want="nvidia-cuda-nvrtc-cu12>=12.0,<12.$((cuda_minor + 1))"
else
    fail 2 "the driver supports CUDA $cuda_major.$cuda_minor; the backend needs CUDA 12 or newer"
fi
# Prints the lib directory of an nvidia-cuda-nvrtc-cu12 wheel under `path` (or the
# Python installation's) whose version the driver supports.
nvrtc_lib() {
    CUDA_MAJOR=$cuda_major CUDA_MINOR=$cuda_minor python3 - "$@" <<'PY' 2>/dev/null
import importlib.metadata as md, os, sys
paths = sys.argv[1:] or None
for dist in md.distributions(path=paths) if paths else md.distributions():
    if dist.metadata["Name"] != "nvidia-cuda-nvrtc-cu12":
        continue
    major, minor = (int(x) for x in dist.version.split(".")[:2])
    driver = (int(os.environ["CUDA_MAJOR"]), int(os.environ["CUDA_MINOR"]))
    if (major, minor) > driver:
        continue
    lib = dist.locate_file("nvidia/cuda_nvrtc/lib")
    if os.path.isdir(lib):
        print(lib)
        break
PY
}
NVRTC_DIR="$(nvrtc_lib)"
if [ -z "$NVRTC_DIR" ]; then
    NVRTC_DIR="$(nvrtc_lib "$out_dir/nvrtc")"
fi
if [ -z "$NVRTC_DIR" ]; then
    log "installing $want into $out_dir/nvrtc"
    python3 -m pip --version >/dev/null 2>&1 || fail 2 "pip is needed to install NVRTC ($want)"
    python3 -m pip install --quiet --disable-pip-version-check --upgrade \
        --target "$out_dir/nvrtc" "$want" || fail 2 "could not install $want"
    NVRTC_DIR="$(nvrtc_lib "$out_dir/nvrtc")"
    [ -n "$NVRTC_DIR" ] || fail 2 "installed $want but found no libnvrtc in $out_dir/nvrtc"
fi
log "NVRTC: $NVRTC_DIR"
export LD_LIBRARY_PATH="$NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RINGKERNEL_REQUIRE_NVRTC=1
export RINGKERNEL_REQUIRE_CUDA=1

# --- 3. the tests ------------------------------------------------------------------------
log "RINGKERNEL_REQUIRE_CUDA=1 cargo test --release -p ringkernel-cuda"
cargo build --release --locked -p ringkernel-cuda --tests >&2 || fail 1 "the CUDA tests do not build"
if ! timeout 180 cargo test --release --locked -p ringkernel-cuda 2>&1 | tee "$out_dir/test.log" >&2; then
    fail 1 "CUDA tests failed (log: $out_dir/test.log)"
fi
passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$out_dir/test.log" | awk '{s += $4} END {print s + 0}')

# --- 4. the benches ----------------------------------------------------------------------
log "cargo bench -p ringkernel-benches --bench gpu -- cuda_"
cargo bench --locked -p ringkernel-benches --bench gpu --no-run >&2 || fail 1 "the GPU benches do not build"
if ! timeout 150 cargo bench --locked -p ringkernel-benches --bench gpu -- cuda_ 2>&1 | tee "$out_dir/bench.log" >&2; then
    fail 1 "the CUDA benches failed (log: $out_dir/bench.log)"
fi
grep -q 'cuda_stream/' "$out_dir/bench.log" || fail 1 "the CUDA benches did not run (log: $out_dir/bench.log)"

# --- the table ---------------------------------------------------------------------------
device=$(sed -n 's/^cuda bench device: //p' "$out_dir/bench.log" | head -n 1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
python3 scripts/bench_table.py <"$out_dir/bench.log" >"$out_dir/rows.txt"
DEVICE="$device" DRIVER="${driver:-unknown}" CUDA="$cuda_major.$cuda_minor" PASSED="$passed" \
    RUSTC="$(rustc --version)" CORES="$(nproc)" NVRTC="$NVRTC_DIR" \
    python3 - "$out_dir/rows.txt" <<'PY' | tee "$out_dir/table.md"
import datetime, os, re, sys

rows = {}
for line in open(sys.argv[1]):
    parts = [p.strip() for p in line.split("|")]
    if len(parts) == 3:
        rows[parts[0]] = (parts[1], parts[2])

def thrpt(name):
    return rows.get(name, ("—", "—"))[1] or "—"

def ratio(a, b):
    # Throughputs like "2.23 GiB/s": the ratio a / b, when both were measured.
    units = {"B/s": 1, "KiB/s": 2**10, "MiB/s": 2**20, "GiB/s": 2**30, "TiB/s": 2**40}
    try:
        (va, ua), (vb, ub) = (thrpt(n).split() for n in (a, b))
        return f"{float(va) * units[ua] / (float(vb) * units[ub]):.2f}×"
    except (KeyError, ValueError):
        return "—"

e = os.environ
# The bench prints CudaBackend::device(): ("NVIDIA H200", (9, 0)).
m = re.match(r'\("(.*)", \((\d+), (\d+)\)\)$', e["DEVICE"])
device = f"{m.group(1)}, compute capability {m.group(2)}.{m.group(3)}" if m else (e["DEVICE"] or "unknown")
print()
print(f"## CUDA ({datetime.date.today().isoformat()})")
print()
print(f"Device: **{device}**, driver {e['DRIVER']} (CUDA {e['CUDA']}), "
      f"NVRTC from `{e['NVRTC']}`; host: {e['CORES']} cores, {e['RUSTC']}, release profile.")
print(f"`RINGKERNEL_REQUIRE_CUDA=1 cargo test --release -p ringkernel-cuda`: "
      f"{e['PASSED']} tests passed, none skipped.")
print()
print("### STREAM seal/open of a device buffer (ChaCha20-Poly1305, 64 KiB chunks)")
print()
print("| size | cpu seal | cpu open | gpu seal | gpu open | gpu/cpu seal | gpu/cpu open |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for size, label in [(65536, "64 KiB"), (1 << 20, "1 MiB"), (16 << 20, "16 MiB")]:
    n = lambda f: f"cuda_stream/{size}/{f}"
    print(f"| {label} | {thrpt(n('cpu_seal'))} | {thrpt(n('cpu_open'))} | "
          f"{thrpt(n('gpu_seal'))} | {thrpt(n('gpu_open'))} | "
          f"{ratio(n('gpu_seal'), n('cpu_seal'))} | {ratio(n('gpu_open'), n('cpu_open'))} |")
print()
print("### Persistent kernel messages/s (64-byte messages in bursts of 1,000 from the host)")
print()
print("| control block | time per burst | messages/s |")
print("|---|---:|---:|")
for case, label in [("plain_control_block", "plain (`encrypt_control_blocks(false)`)"),
                    ("sealed_control_block", "sealed, opened and re-sealed by the CUDA kernel every round")]:
    t, r = rows.get(f"cuda_kernel/{case}", ("—", "—"))
    # criterion's "769.23 Kelem/s": an element is a message.
    r = (r or "—").replace(" Kelem/s", " k").replace(" Melem/s", " M").replace(" elem/s", "")
    print(f"| {label} | {t} | {r} |")
PY
log "done in $((SECONDS - started)) s (logs: $out_dir/)"
