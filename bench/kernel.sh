#!/usr/bin/env bash
# The kernel pause benchmark: how long `livesplice apply --kernel` and `undo --kernel`
# stop the kernel, for the updates tests/kernel makes with `livesplice create --kernel`
# (cmdline_proc_show: 1 function; meminfo_proc_show: 1 large function with alternatives;
# Debian's ext4 mballoc fix: 2 functions of the ext4 module), inside the test bed's
# guest: Debian's 6.1 kernel under qemu TCG with two virtual CPUs.
#
#   bench/kernel.sh BUILD_DIR OUT.json        (BENCH_ROUNDS, default 10, after a warm-up)
#
# The pause is what livesplice.ko measures: stop_machine called -> returned (an upper
# bound: it includes waking the stopper threads); work is the stack check and the writes
# with every CPU held. TCG timing is emulation timing, not hardware timing: compare rows
# with each other, not with Ksplice's 0.7 ms on hardware.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "$1" && pwd)
out=$2
work="$build/bench/kernel"
mkdir -p "$work"
BENCH_ROUNDS=${BENCH_ROUNDS:-10}
# The guest script reads its round count from a line the host writes into it.
script="$work/kernel-bench.sh"
{ echo "BENCH_ROUNDS=$BENCH_ROUNDS"; cat "$root/bench/kernel-guest.sh"; } > "$script"
"$root/tests/kernel/run-match-test" "$work" "$build/livesplice" "$build/tests/kernel/ktool" "$script" >&2
grep '^bench ' "$work/kernel-bench/results.log" | sed 's/^bench //' | awk '{
  printf "{"; for (i = 1; i <= NF; i++) { split($i, kv, "="); printf "%s\"%s\": %s", (i > 1 ? ", " : ""), kv[1], (kv[1] == "update" ? "\"" kv[2] "\"" : kv[2]) } print "}" }' \
  > "$work/rounds.jsonl"
jq -s --argjson rounds "$BENCH_ROUNDS" '
  def stats(f): (map(f) | sort) as $v | {median_us: ($v[($v | length) / 2 | floor] / 1000),
    min_us: ($v[0] / 1000), max_us: ($v[-1] / 1000)};
  {benchmark: "kernel-pause", timing: "qemu TCG, 2 vCPUs (emulated: not hardware figures)",
   rounds: $rounds,
   results: (group_by(.update) | map({update: .[0].update, functions: .[0].functions,
     apply: stats(.apply_ns), undo: stats(.undo_ns),
     apply_work: stats(.apply_work_ns), undo_work: stats(.undo_work_ns)}))}' \
  "$work/rounds.jsonl" > "$out"
cat "$out"
