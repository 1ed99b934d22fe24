#!/usr/bin/env bash
# The kernel benchmark, inside the test bed's guest (Debian's 6.1 kernel under qemu TCG,
# two virtual CPUs):
# - livesplice: how long `livesplice apply --kernel` and `undo --kernel` stop the kernel
#   (the pause), and how long the whole command takes, for updates made with `livesplice
#   create --kernel`: tests/kcreate's cmdline (1 function), meminfo (1 large function with
#   alternatives) and Debian's ext4 mballoc fix (2 functions of the ext4 module), and
#   bench/kernel-patches' blk-sysfs-1 and blk-sysfs-20 (1 and 20 show functions of
#   block/blk-sysfs.c, each then printing " patched" in /sys/block/vda/queue);
# - kernel livepatch, same guest, same change: bench/klp's modules replace the same 1 and
#   20 functions with the same new bodies; timed from loading the module until
#   /sys/kernel/livepatch/NAME/transition reads 0, and from writing 0 to `enabled` until
#   it reads 0 again (then the unload);
# - the ratios livesplice / livepatch for the quantities that compare (below).
#
#   bench/kernel.sh BUILD_DIR OUT.json        (BENCH_ROUNDS, default 10, after a warm-up)
#
# BENCH_ROUNDS=0 runs only the warm-up round, with every check of the guest script (each
# update and livepatch changes exactly its functions' output, and livepatch's output is
# livesplice's), and writes no figures: the kernel.bench test (label kernel).
#
# The pause is what livesplice.ko measures: stop_machine called -> returned (an upper
# bound: it includes waking the stopper threads); work is the stack check and the writes
# with every CPU held. Livepatch has no such pause: it never stops the machine, each task
# switches on its own when its stack holds no patched function (its consistency model),
# so its transition time is how long until the last task switched, while everything
# keeps running. The comparable end-to-end figures are livesplice's whole apply command
# (reading the update, run-pre matching, loading its module, the pause) against
# livepatch's load-until-transition-over, and undo against disable-until-over + unload.
# TCG timing is emulation timing, not hardware timing: compare rows with each other, not
# with Ksplice's 0.7 ms on hardware.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "$1" && pwd)
out=$2
work="$build/bench/kernel"
mkdir -p "$work/updates"
BENCH_ROUNDS=${BENCH_ROUNDS:-10}
livesplice="$build/livesplice" clock="$build/bench/kbench-clock"
for f in "$livesplice" "$build/tests/kernel/ktool" "$clock"; do
  [[ -x $f ]] || { echo "bench/kernel.sh: $f is not built (cmake --build $build --target bench-kernel)" >&2; exit 1; }
done

# The updates, made as tests/kernel/run-match-test makes them: Debian's linux-source-6.1
# and the image package's config.
tb="$root/scripts/kernel-testbed"
"$tb" fetch
eval "$("$tb" env)"   # the release: source_tarball, config, headers (each update's module)
files=()
for patch in "$root"/tests/kcreate/patches/{cmdline,meminfo,ext4-mballoc-6.1.192-2}.patch \
             "$root"/bench/kernel-patches/blk-sysfs-{1,20}.patch; do
  p=$(basename "$patch" .patch)
  "$livesplice" create -q --kernel --source "$source_tarball" --config "$config" --headers "$headers" \
    --patch "$patch" -o "$work/updates/$p.lsu"
  files+=(--file "$work/updates/$p.lsu=/updates/$p.lsu")
done
"$tb" modules "$work/klp" "$root/bench/klp"

# The guest script reads its round count from a line the host writes into it.
script="$work/kernel-bench.sh"
{ echo "BENCH_ROUNDS=$BENCH_ROUNDS"; cat "$root/bench/kernel-guest.sh"; } > "$script"
"$root/tests/kernel/run-guest-test" "$script" "$work" "$livesplice" "$build/tests/kernel/ktool" "" \
  "${files[@]}" --bin "$clock" --module "$work/klp/lsb_klp1.ko" --module "$work/klp/lsb_klp20.ko" \
  --timeout $((900 + 240 * BENCH_ROUNDS)) >&2
log="$work/kernel-bench/results.log"
if [[ $BENCH_ROUNDS == 0 ]]; then echo "bench/kernel.sh: checked (BENCH_ROUNDS=0: no figures)" >&2; exit 0; fi
# "bench k=v ..." and "klp k=v ..." lines, one JSON object each ("update" is a string).
tojson() { grep "^$1 " "$log" | sed "s/^$1 //" | awk '{
  printf "{"; for (i = 1; i <= NF; i++) { split($i, kv, "="); printf "%s\"%s\": %s", (i > 1 ? ", " : ""), kv[1], (kv[1] == "update" ? "\"" kv[2] "\"" : kv[2]) } print "}" }'; }
tojson bench > "$work/rounds.jsonl"
tojson klp > "$work/klp-rounds.jsonl"
load=$(cut -d' ' -f1-3 /proc/loadavg)
jq -n --argjson rounds "$BENCH_ROUNDS" --arg load "$load" \
  --slurpfile ls "$work/rounds.jsonl" --slurpfile klp "$work/klp-rounds.jsonl" '
  def stats(f): (map(f) | sort) as $v | {median_us: ($v[($v | length) / 2 | floor] / 1000),
    min_us: ($v[0] / 1000), max_us: ($v[-1] / 1000)};
  def ratio(a; b): if b > 0 then (a / b * 1000 | round / 1000) else null end;
  ($ls | group_by(.update) | map({update: .[0].update, functions: .[0].functions,
     apply: stats(.apply_ns), undo: stats(.undo_ns),
     apply_work: stats(.apply_work_ns), undo_work: stats(.undo_work_ns),
     apply_command: stats(.apply_cmd_ns), undo_command: stats(.undo_cmd_ns)})) as $rows
  | ($klp | group_by(.functions) | map({functions: .[0].functions,
     update: "lsb_klp\(.[0].functions).ko",
     enable: stats(.enable_ns), load: stats(.load_ns),
     transition_after_load: stats(.enable_ns - .load_ns),
     disable: stats(.disable_ns), unload: stats(.unload_ns),
     disable_and_unload: stats(.disable_ns + .unload_ns),
     transition_over_at_load: (map(.done_at_load) | add),
     transition_over_at_write: (map(.done_at_write) | add)})) as $lp
  | {benchmark: "kernel-pause", timing: "qemu TCG, 2 vCPUs (emulated: not hardware figures)",
     rounds: $rounds, host_load_average: $load,
     results: $rows,
     livepatch: {what: "kernel livepatch, same guest, same change as blk-sysfs-N.lsu: enable = load the module until /sys/kernel/livepatch/NAME/transition reads 0 (load = the finit_module call alone, which registers the ftrace handlers and makes the first try at switching every task; transition_after_load = the rest); disable = write 0 to enabled until transition reads 0; unload = delete_module after that; no stop-the-world pause (per-task consistency model)",
       results: $lp},
     ratios: {what: "livesplice / livepatch, medians, for blk-sysfs-N.lsu against lsb_klpN.ko. apply_command_vs_enable and undo_command_vs_disable_unload compare end to end (command start until every task runs the new/old code); apply_pause_vs_enable and undo_pause_vs_disable set livesplice stop-the-world pause against livepatch transition (enable / disable) time, which stops nothing: not like for like",
       results: [ $lp[] as $k | ($rows[] | select(.update == "blk-sysfs-\($k.functions)")) as $r
         | {functions: $k.functions,
            apply_command_vs_enable: ratio($r.apply_command.median_us; $k.enable.median_us),
            undo_command_vs_disable_unload: ratio($r.undo_command.median_us; $k.disable_and_unload.median_us),
            apply_pause_vs_enable: ratio($r.apply.median_us; $k.enable.median_us),
            undo_pause_vs_disable: ratio($r.undo.median_us; $k.disable.median_us)} ]}}' > "$out"
cat "$out"
