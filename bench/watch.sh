#!/usr/bin/env bash
# The watch benchmark: what `livesplice watch` adds to the start of a process it
# patches, and whether any start runs the replaced function unpatched.
#
#   bench/watch.sh BUILD_DIR OUT.json
#
# bench/startup (Debian's hardening flags) reads CLOCK_MONOTONIC as main() begins and
# prints it with what value() returns; an update changes value() from 1001 to 2002.
# bench-exec-latency starts it BENCH_WATCH_RUNS times (default 200) per phase and reports
# exec → main in microseconds (median, p10, p90, min, max, mean) and the values seen:
#   floor_before   no watch running
#   watched        watch running with the update stored: every start is held and patched
#   unwatched      the same, a copy of the program at another path (not marked: what a
#                  process watch does not patch pays while it runs)
#   floor_after    watch stopped (SIGTERM): the floor again, for drift
# added_us is watched's median minus the floors' (their mean), ratio watched / floor;
# unpatched_starts counts watched starts whose main() saw 1001: how many ran the
# replaced function unpatched (goal 0). The hold's own figure comes from watch's log
# ("released process N after X ms", median).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:?usage: bench/watch.sh BUILD_DIR OUT.json}
out=${2:?usage: bench/watch.sh BUILD_DIR OUT.json}
runs=${BENCH_WATCH_RUNS:-200}
ls_bin="$build/livesplice"
clock="$build/bench/bench-exec-latency"

work=$(mktemp -d "${TMPDIR:-/tmp}/livesplice-bench-watch.XXXXXX")
stay_pid= watch_pid=
cleanup() {
  [[ -n $stay_pid ]] && kill "$stay_pid" 2>/dev/null || true
  [[ -n $watch_pid ]] && kill "$watch_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cp -r "$root/bench/startup" "$work/src"
make -s -C "$work/src"
"$ls_bin" create -q --source "$work/src" --patch "$root/bench/startup/fix.patch" -o "$work/startup.lsu" >/dev/null
cp "$work/src/startup" "$work/unwatched"
store="$work/store"

phase() { "$clock" "$runs" "$@"; }

echo "==> floor, no watch ($runs starts)" >&2
floor_before=$(phase "$work/src/startup")

# A running copy, patched by install: watch finds the program's file by it.
"$work/src/startup" stay >/dev/null &
stay_pid=$!
sleep 0.2
"$ls_bin" install -q --root "$store" "$work/startup.lsu" >/dev/null
"$ls_bin" watch --root "$store" >"$work/watch.log" 2>&1 &
watch_pid=$!
for _ in $(seq 600); do
  grep -q "watching $work/src/startup (program)" "$work/watch.log" && break
  sleep 0.1
done
grep -q "watching $work/src/startup (program)" "$work/watch.log" || { cat "$work/watch.log" >&2; exit 1; }
kill "$stay_pid"; wait "$stay_pid" 2>/dev/null || true; stay_pid=

echo "==> watched ($runs starts)" >&2
watched=$(phase "$work/src/startup")
echo "==> a program watch does not patch, watch running ($runs starts)" >&2
unwatched=$(phase "$work/unwatched")
kill -TERM "$watch_pid"; wait "$watch_pid" || true; watch_pid=
echo "==> floor again, watch stopped ($runs starts)" >&2
floor_after=$(phase "$work/src/startup")

holds=$(sed -n 's/^released process .* after \([0-9.]*\) ms$/\1/p' "$work/watch.log" | sort -n)
hold_median=$(awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "null"}' <<<"$holds")
held=$(grep -c "^released process" "$work/watch.log" || true)

jq -n --argjson before "$floor_before" --argjson watched "$watched" --argjson unwatched "$unwatched" \
      --argjson after "$floor_after" --argjson hold_ms "$hold_median" --argjson held "$held" '
  (($before.median_us + $after.median_us) / 2) as $floor |
  {benchmark: "watch",
   what: "exec to the first instruction of main(), microseconds, per start",
   floor_before: $before, watched: $watched, unwatched: $unwatched, floor_after: $after,
   floor_median_us: $floor,
   added_us: ($watched.median_us - $floor),
   ratio: ($watched.median_us / $floor),
   unwatched_ratio: ($unwatched.median_us / $floor),
   held: $held,
   hold_median_ms: $hold_ms,
   unpatched_starts: ($watched.values["1001"] // 0),
   patched_starts: ($watched.values["2002"] // 0)}' | tee "$out"
