#!/usr/bin/env bash
# The create benchmark: `livesplice create` on a small multi-file make project
# (examples/demo, three C files) with a one-file patch (examples/demo/fix.patch), and
# how much time create spends beyond the two builds it has to run. Target: under 2 s.
#
#   bench/create.sh BUILD_DIR OUT.json
#
# create --json reports its own phase timings (pre build, post build, total); the
# overhead is total minus the two builds. As a cross-check, the same two builds are also
# timed on their own with plain make, and subtracted from create's wall time.
# BENCH_CREATE_RUNS sets the number of runs (default 10).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "$1" && pwd)
out=$2
runs=${BENCH_CREATE_RUNS:-10}
demo="$root/examples/demo"
target_s=2
log() { echo "==> $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/livesplice-bench-create.XXXXXX")
trap 'rm -rf "$work"' EXIT
timeit="$build/bench/bench-timeit"

log "timing the pre build on its own (make, $runs runs)"
pre=$("$timeit" --runs "$runs" --warmup 1 \
  --prepare "rm -rf '$work/t' && cp -r '$demo' '$work/t'" -- make -s -C "$work/t")
log "timing the post build on its own (patch, then make: one object rebuilt; $runs runs)"
post=$("$timeit" --runs "$runs" --warmup 1 \
  --prepare "rm -rf '$work/t' && cp -r '$demo' '$work/t' && make -s -C '$work/t' && patch -s -d '$work/t' -p1 < '$demo/fix.patch'" \
  -- make -s -C "$work/t")

log "timing livesplice create --json ($runs runs)"
runs_json="[]"
for ((i = 0; i <= runs; i++)); do     # run 0 is a warm-up
  rm -rf "$work/t" "$work/u.lsu"
  cp -r "$demo" "$work/t"
  t0=$(date +%s.%N)
  set +e
  result=$("$build/livesplice" create --json --source "$work/t" --patch "$demo/fix.patch" \
             -o "$work/u.lsu" 2>"$work/create.err")
  rc=$?
  set -e
  t1=$(date +%s.%N)
  if [[ $rc -ne 0 ]]; then
    err=$(cat "$work/create.err")
    echo "bench/create: livesplice create failed (exit $rc): $err" >&2
    jq -n --argjson rc "$rc" --arg err "$err" --argjson pre "$pre" --argjson post "$post" '{
      benchmark: "create/demo", error: ("livesplice create exited " + ($rc|tostring) + ": " + $err),
      plain_pre_build: $pre, plain_post_build: $post}' > "$out"
    exit 1
  fi
  [[ $i -eq 0 ]] && continue
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
  runs_json=$(jq -c --argjson r "$result" --argjson wall "$wall" '. + [{wall_s: $wall, seconds: $r.seconds}]' <<<"$runs_json")
done
summary=$result

jq -n --argjson runs "$runs_json" --argjson pre "$pre" --argjson post "$post" \
      --argjson summary "$summary" --argjson target "$target_s" '
  def stats: sort as $s | ($s | length) as $n | ($s | add / $n) as $mean |
    { runs: $n,
      median_s: (if $n % 2 == 1 then $s[($n - 1) / 2] else ($s[$n / 2 - 1] + $s[$n / 2]) / 2 end),
      min_s: $s[0], max_s: $s[-1], mean_s: $mean,
      stddev_s: (if $n > 1 then (($s | map((. - $mean) * (. - $mean)) | add) / ($n - 1) | sqrt) else 0 end) };
  ($runs | map(.seconds.total - .seconds.pre_build - .seconds.post_build) | stats) as $overhead |
  {
    benchmark: "create/demo",
    what: "livesplice create on examples/demo (3 C files, make) with fix.patch (one file)",
    create_wall: ($runs | map(.wall_s) | stats),
    create_reported: {
      total: ($runs | map(.seconds.total) | stats),
      pre_build: ($runs | map(.seconds.pre_build) | stats),
      post_build: ($runs | map(.seconds.post_build) | stats)
    },
    overhead: ($overhead + {definition: "create total - its pre build - its post build (create --json seconds)"}),
    plain_pre_build: $pre,
    plain_post_build: $post,
    overhead_vs_plain_builds_s: (($runs | map(.wall_s) | stats).median_s - $pre.median_s - $post.median_s),
    last_result: $summary,
    target: {overhead_median_s_below: $target, met: ($overhead.median_s < $target)}
  }' > "$out"
