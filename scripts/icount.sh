#!/usr/bin/env bash
# Instruction counts of the security layers' hot paths, as rustls' ci-bench keeps them:
# each scenario of benches/icount (`ringkernel-icount --list`) runs once under
# callgrind, which counts the instructions of its measured part only (all threads), and
# the count is compared with the checked-in baseline, benches/icount-baseline.txt.
#
#   bash scripts/icount.sh            print `scenario baseline now change%`; fail when a
#                                     count rose by more than ICOUNT_TOLERANCE percent
#                                     (default 10) or a scenario has no baseline
#   bash scripts/icount.sh --update   rewrite the baseline file with this run's counts
#
# The script only compares with the file. A commit that raises a count on purpose (a
# new check on the hot path, say) updates the baseline in the same commit and says in
# its message which count rose and why. Counts depend on the compiler and dependency
# versions as well as our code: after a toolchain or Cargo.lock update, rerun with
# --update and say so. docs/benchmarks.md ("Instruction counts") has the figures and
# how closely they repeat.
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=benches/icount-baseline.txt
tolerance="${ICOUNT_TOLERANCE:-10}"
update=0
case "${1:-}" in
    "") ;;
    --update) update=1 ;;
    *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)" >&2
    exit 1
fi

cargo build --release --locked --quiet -p ringkernel-icount
bin=target/release/ringkernel-icount

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

declare -A base=()
if [ -f "$baseline" ]; then
    while read -r name count _; do
        case "$name" in ''|'#'*) continue ;; esac
        base[$name]=$count
    done < "$baseline"
fi

mapfile -t scenarios < <("$bin" --list | cut -f1)
declare -A now=()
for s in "${scenarios[@]}"; do
    # --instr-atstart=no: nothing is counted until the scenario starts its measured
    # part (a client request); --vgdb=no: no gdbserver FIFOs in the temp directory.
    if ! valgrind --tool=callgrind --instr-atstart=no --vgdb=no \
        --callgrind-out-file="$work/$s.out" "$bin" "$s" > "$work/$s.log" 2>&1; then
        cat "$work/$s.log" >&2
        echo "scenario $s failed under callgrind" >&2
        exit 1
    fi
    # `totals:` is what was collected ("summary:" stays 0 with --instr-atstart=no).
    count="$(awk '$1 == "totals:" { print $2 }' "$work/$s.out")"
    if ! [[ "$count" =~ ^[0-9]+$ ]] || [ "$count" -eq 0 ]; then
        echo "no instruction count for $s in its callgrind output" >&2
        exit 1
    fi
    now[$s]=$count
done

failed=0
printf '%-22s %15s %15s %9s\n' scenario baseline now change%
for s in "${scenarios[@]}"; do
    b="${base[$s]:-}"
    if [ -z "$b" ]; then
        printf '%-22s %15s %15s %9s\n' "$s" - "${now[$s]}" new
        [ "$update" -eq 1 ] || failed=1
        continue
    fi
    change="$(awk -v b="$b" -v n="${now[$s]}" 'BEGIN { printf "%+.2f", (n - b) * 100 / b }')"
    printf '%-22s %15s %15s %9s\n' "$s" "$b" "${now[$s]}" "$change"
    if awk -v c="$change" -v t="$tolerance" 'BEGIN { exit !(c > t) }'; then
        echo "  $s: instruction count rose by more than ${tolerance}%" >&2
        failed=1
    fi
done
for s in "${!base[@]}"; do
    if [ -z "${now[$s]:-}" ]; then
        echo "  $s is in $baseline but no longer a scenario" >&2
        [ "$update" -eq 1 ] || failed=1
    fi
done

if [ "$update" -eq 1 ]; then
    {
        echo "# Instruction counts of benches/icount's scenarios under callgrind (scripts/icount.sh)."
        echo "# Written by scripts/icount.sh --update; a commit that raises a count updates this"
        echo "# file and says why in its message."
        echo "# $(date -u +%Y-%m-%d), $(uname -m), $(rustc --version), $(valgrind --version)"
        for s in "${scenarios[@]}"; do
            echo "$s ${now[$s]}"
        done
    } > "$baseline"
    echo "baseline written to $baseline"
    exit 0
fi
if [ "$failed" -ne 0 ]; then
    echo "instruction counts: FAILED (a rise over ${tolerance}% or a scenario without a baseline;" \
        "if intended, run scripts/icount.sh --update and say why in the commit message)" >&2
    exit 1
fi
echo "instruction counts: within ${tolerance}% of $baseline"
