#!/usr/bin/env bash
# Fuzzing (issue #16): builds the cargo-fuzz targets of fuzz/ and runs each for
# FUZZ_SECONDS (default 30) from its seed corpus in fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS each
#   scripts/fuzz.sh audit_verify    only the targets named
#   scripts/fuzz.sh --write-seeds   (re)writes the seed corpora from genuine artefacts
#
# Needs a nightly toolchain (cargo-fuzz builds with -Zsanitizer=address); installs
# cargo-fuzz when nightly is there and it is missing. Without nightly it says so and
# exits 0: fuzzing is then SKIPPED, which the output states plainly.
#
# New inputs libFuzzer finds go to a scratch corpus that is removed at the end: the
# committed seed corpora stay small and change only with --write-seeds (which keeps
# the inputs of fixed crashes, fuzz/corpus/<target>/regression-*). A crash fails
# the script; its input is kept in fuzz/artifacts/<target>/ (ignored by git) and
# `cargo +nightly fuzz run -a <target> <file>` replays it. Each run's summary line
# (seconds, executions, libFuzzer's cov: and ft:) is printed at the end, for
# docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(envelope_open stream_open audit_verify sandbox_patterns device_ring report_exporters runtime_ops)
seconds="${FUZZ_SECONDS:-30}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzzing: SKIPPED (no nightly toolchain / cargo-fuzz)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (a nightly toolchain is present)"
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzzing: SKIPPED (no nightly toolchain / cargo-fuzz: installing cargo-fuzz failed)"
        exit 0
    fi
fi

# Everything the targets and libFuzzer write outside the repository goes here.
scratch="$(mktemp -d)"
trap 'rm -rf -- "$scratch"' EXIT
export TMPDIR="$scratch"

if [ "${1:-}" = "--write-seeds" ]; then
    cargo +nightly fuzz build -a write_seeds
    # The inputs of fixed crashes are not made from artefacts: kept as they are.
    mkdir -p "$scratch/regressions"
    (cd fuzz/corpus && find . -name 'regression-*' -exec cp --parents {} "$scratch/regressions/" \;)
    rm -rf fuzz/corpus
    mkdir -p "$scratch/write_seeds"
    RINGKERNEL_FUZZ_SEEDS="$PWD/fuzz/corpus" cargo +nightly fuzz run -a write_seeds \
        "$scratch/write_seeds" -- -runs=0 >/dev/null 2>&1
    cp -a "$scratch/regressions/." fuzz/corpus/
    du -sh fuzz/corpus
    exit 0
fi
[ $# -gt 0 ] && TARGETS=("$@")

build_start=$SECONDS
echo "== cargo +nightly fuzz build (debug assertions on)"
cargo +nightly fuzz build -a
echo "fuzz build: $((SECONDS - build_start)) s"
# The fuzz crate builds only on nightly, so the workspace's clippy never sees it.
if cargo +nightly clippy --version >/dev/null 2>&1; then
    lint_start=$SECONDS
    echo "== cargo +nightly clippy (fuzz crate)"
    (cd fuzz && cargo +nightly clippy --all-targets --quiet -- -D warnings)
    echo "fuzz clippy: $((SECONDS - lint_start)) s"
else
    echo "fuzz clippy: SKIPPED (the nightly toolchain has no clippy component)"
fi

summary=()
failed=0
# Targets with an open finding, or with a finding fixed too recently to trust a random
# CI run with (its input in fuzz/open-findings/<target>/, described in
# docs/reliability.md), are listed here and not run by default: name them to run them.
# None now: runtime_ops' finding G has its regression seed in fuzz/corpus/runtime_ops/.
OPEN_FINDINGS=()
for t in "${TARGETS[@]}"; do
    if [ $# -eq 0 ] && [[ " ${OPEN_FINDINGS[*]} " == *" $t "* ]]; then
        summary+=("fuzz $t: SKIPPED (open finding: fuzz/open-findings/$t/, docs/reliability.md)")
        continue
    fi
    echo "== fuzz $t for ${seconds} s"
    work="$scratch/corpus-$t"
    art="$PWD/fuzz/artifacts/$t"
    mkdir -p "$work" "$art"
    log="$scratch/$t.log"
    start=$SECONDS
    if cargo +nightly fuzz run -a "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -artifact_prefix="$art/" -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (input in fuzz/artifacts/$t/)"
        failed=1
        tail -40 "$log"
    fi
    # The report exporters' PDFs: every input of the corpus it ran (seeds and what it
    # grew) replayed with each PDF written out, then `qpdf --check` on each.
    if [ "$t" = report_exporters ] && [ "$result" = ok ]; then
        if command -v qpdf >/dev/null 2>&1; then
            pdfs="$scratch/pdfs"
            mkdir -p "$pdfs"
            RINGKERNEL_FUZZ_PDF_DIR="$pdfs" cargo +nightly fuzz run -a "$t" "$work" \
                "fuzz/corpus/$t" -- -runs=0 >"$scratch/pdf-replay.log" 2>&1 ||
                { tail -20 "$scratch/pdf-replay.log"; result="CRASH while writing its PDFs"; failed=1; }
            bad=0
            for f in "$pdfs"/*.pdf; do
                [ -e "$f" ] || continue
                if ! qpdf --check "$f" >"$scratch/qpdf.log" 2>&1; then
                    echo "qpdf --check refused a fuzzed report's PDF:"; tail -5 "$scratch/qpdf.log"
                    cp "$f" "$art/"
                    bad=$((bad + 1))
                fi
            done
            n_pdfs=$(find "$pdfs" -name '*.pdf' | wc -l)
            if [ "$bad" -gt 0 ]; then
                result="$bad of $n_pdfs PDFs refused by qpdf --check (copied to fuzz/artifacts/$t/)"
                failed=1
            else
                result="$result; qpdf --check accepts all $n_pdfs PDFs of its corpus"
            fi
        else
            result="$result; qpdf --check SKIPPED (qpdf not installed)"
        fi
    fi
    # libFuzzer's last status line: "#<execs> DONE cov: <n> ft: <n> corp: ..." (or the
    # last pulse before a crash).
    last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
    execs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")"
    cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")"
    ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")"
    summary+=("fuzz $t: $result, $((SECONDS - start)) s, ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}")
done
printf '%s\n' "${summary[@]}"
exit "$failed"
