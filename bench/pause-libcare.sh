# W0 beside libcare, for bench/pause.sh (sourced by it, after its W0 rows: it uses
# gap_of, log, hot_list, ls_bin and W0's tree and update in $work/hot).
# BENCH_PAUSE_LIBCARE_RUNS (default 20) rounds per thread count and tool.
#
# libcare (a peer for running processes) is not packaged for Debian, so this part runs
# only when BENCH_PAUSE_LIBCARE names a libcare build: its source tree or its src/
# directory, where `make -C src` put libcare-ctl, libcare-cc, libcare-patch-make and the
# kpatch_* tools. Without it the JSON says the comparison did not run, and why.
#
# What is hard is making the two sides the same:
# - The workload: W0's own sources and flags. libcare builds its patch with its own
#   tools: libcare-patch-make builds the tree with libcare-cc (original, then with
#   W0's fix.patch) and its patch is keyed to the original binary's build-id, so its
#   target is the binary libcare built (lpmake/prog). That binary differs from W0's only
#   in its notes and debug info: the code is the same compiler's from the same flags.
# - The pause: livesplice reports its own, libcare does not. Both are measured the same
#   way from inside the target: the timing thread's largest gap between two wake-ups
#   200 us apart, over a window holding one apply (and then one undo), against a window
#   as long with nothing done (the control: with 16 workers spinning on few CPUs the
#   timing thread waits for a turn too).
# - The state: a fresh target per attempt and tool, tools alternating (their order
#   alternating too), so neither inherits what the other left. libcare can leave a
#   target dead (its unpatch unmaps the new code under a thread still running it), which
#   counts as a failure, with how the target ended.
# - Success: the target alive afterwards, and livesplice's exit status 0 or libcare's
#   report that it applied (restored) the patch.

# libcare_tools DIR: prints the directory holding libcare's tools, or fails.
libcare_tools() {
  local d
  for d in "$1/src" "$1"; do
    [[ -x $d/libcare-ctl && -x $d/libcare-patch-make && -x $d/kpatch_gensrc ]] && { echo "$d"; return 0; }
  done
  return 1
}

# libcare_build SRC PATCH OUT TOOLS: builds W0 with libcare's tools into OUT; leaves the
# target in OUT/src/lpmake/prog and the patch in OUT/patch.kpatch.
libcare_build() {
  local src=$1 fix=$2 out=$3 tools=$4
  mkdir -p "$out"
  cp -r "$src" "$out/src"
  (cd "$out/src" && make -s clean >/dev/null 2>&1; rm -f prog ./*.o)
  # libcare-patch-make drives the build through make -f lpmakefile: all, install, clean.
  printf 'include Makefile\n\nall: prog\n\ninstall: prog\n\tmkdir -p $(DESTDIR)\n\tcp prog $(DESTDIR)/prog\n\nclean:\n\trm -f prog *.o\n' \
    > "$out/src/lpmakefile"
  # It colours its output with tput, which fails (and stops it) without a known TERM.
  (cd "$out/src" && TERM=xterm "$tools/libcare-patch-make" --clean "$fix") > "$out/build.log" 2>&1 ||
    { echo "bench/pause: libcare-patch-make failed: $(tail -n 5 "$out/build.log")" >&2; return 1; }
  local kp
  kp=$(ls "$out/src/patchroot/"*.kpatch 2>/dev/null | head -n 1)
  [[ -n $kp && -x $out/src/lpmake/prog ]] ||
    { echo "bench/pause: libcare-patch-make made no patch: $(tail -n 5 "$out/build.log")" >&2; return 1; }
  cp "$kp" "$out/patch.kpatch"
}

# cmp_start BIN T: starts a W0 target, waits until its workers run; sets target_pid.
cmp_start() {
  local t0=$SECONDS
  rm -f "$work/cmp.out"   # the last target's "ready" is not this one's
  "$1" "$2" sleepy > "$work/cmp.out" 2>&1 &
  target_pid=$!
  until grep -qs '^ready' "$work/cmp.out"; do
    if ((SECONDS - t0 > 60)) || ! kill -0 "$target_pid" 2>/dev/null; then
      echo "bench/pause: W0 did not start in $((SECONDS - t0)) s: $(cat "$work/cmp.out")," \
        "state $(cut -d' ' -f3 "/proc/$target_pid/stat" 2>/dev/null || echo gone)" >&2
      return 1
    fi
    sleep 0.01
  done
  sleep 0.2   # every worker inside hot() by now
}

# cmp_end: stops the target; sets target_end to how it ended ("alive" if it was still
# running). Not in a subshell: only this shell can wait for the target.
cmp_end() {
  local status=0
  if kill -0 "$target_pid" 2>/dev/null; then
    kill "$target_pid"; wait "$target_pid" 2>/dev/null || true
    target_end=alive
  else
    wait "$target_pid" 2>/dev/null || status=$?
    if ((status > 128)); then target_end="killed by SIG$(kill -l $((status - 128)))"; else target_end="exited $status"; fi
  fi
  target_pid=
}

# cmp_op TOOL OP: one apply or undo of W0's fix by TOOL on $target_pid, with the target's
# largest gap over it. Prints {ok, gap, wall_us, pause_us (livesplice's own), error}.
cmp_op() {
  local tool=$1 op=$2 t0 t1 ok=false out gap=null rc=0
  local -a cmd
  case $tool/$op in
    livesplice/apply) cmd=("$ls_bin" -q apply --pid "$target_pid" "$work/hot/u.lsu" --retries 0 --json) ;;
    livesplice/undo) cmd=("$ls_bin" -q undo --pid "$target_pid" --retries 0 --json) ;;
    libcare/apply) cmd=("$lc_tools/libcare-ctl" patch -p "$target_pid" "$work/hot-libcare/patch.kpatch") ;;
    libcare/undo) cmd=("$lc_tools/libcare-ctl" unpatch -p "$target_pid") ;;
  esac
  gap_of "$target_pid" "$work/cmp.out" >/dev/null   # starts the window
  t0=$(date +%s%N)
  if [[ $tool == livesplice ]]; then
    out=$("${cmd[@]}" 2>"$work/cmp.err") || rc=$?
  else
    "${cmd[@]}" > "$work/cmp.err" 2>&1 || rc=$?   # its messages go to both
    out=null
  fi
  t1=$(date +%s%N)
  sleep 0.02   # a target about to die of it does so by now
  local err
  err="exit $rc: $(grep -v '^\s*$' "$work/cmp.err" | tail -n 1)"
  kill -0 "$target_pid" 2>/dev/null && { gap=$(gap_of "$target_pid" "$work/cmp.out" 2>/dev/null) || gap=; }
  if ! kill -0 "$target_pid" 2>/dev/null || [[ -z $gap ]]; then   # dead, or died meanwhile
    gap=null
    err="the target died (the tool exited $rc)"
  else
    if [[ $tool == livesplice ]]; then
      ((rc == 0)) && ok=true
    else
      # libcare-ctl's exit status does not tell (unpatch exits with the number of hunks
      # it restored, patch 0 also when it found nothing to do): its report line does.
      grep -Eqs 'successfully (applied|cancelled)' "$work/cmp.err" && ok=true
    fi
  fi
  $ok || out=null
  jq -c -n --argjson ok "$ok" --argjson gap "$gap" --argjson wall $(((t1 - t0) / 1000)) --argjson out "$out" \
    --arg err "$err" \
    '{ok: $ok, gap: $gap, wall_us: $wall, pause_us: ($out.pause_us // $out.undone[0].pause_us // null),
      error: (if $ok then null else $err end)}'
}

# cmp_round TOOL T: one fresh target, apply, undo, and a control window as long as the
# apply; prints one JSON line.
cmp_round() {
  local tool=$1 nthr=$2 bin=$work/hot/src/prog a u=null control=null
  [[ $tool == libcare ]] && bin=$work/hot-libcare/src/lpmake/prog
  cmp_start "$bin" "$nthr" || return 1
  a=$(cmp_op "$tool" apply)
  [[ $(jq -r .ok <<< "$a") == true ]] && u=$(cmp_op "$tool" undo)
  if kill -0 "$target_pid" 2>/dev/null; then
    gap_of "$target_pid" "$work/cmp.out" >/dev/null
    local wall
    wall=$(jq -r .wall_us <<< "$a")
    sleep "$((wall / 1000000)).$(printf '%06d' $((wall % 1000000)))"
    kill -0 "$target_pid" 2>/dev/null && control=$(gap_of "$target_pid" "$work/cmp.out")
  fi
  cmp_end
  jq -c -n --arg tool "$tool" --argjson a "$a" --argjson u "$u" --argjson control "$control" --arg ended "$target_end" \
    '{tool: $tool, apply: $a, undo: $u, control: $control, target: $ended}'
}

# libcare_compare: the comparison's JSON object (did not run: why).
libcare_compare() {
  local dir=${BENCH_PAUSE_LIBCARE-}
  if [[ -z $dir ]]; then
    log "libcare comparison: not run (BENCH_PAUSE_LIBCARE does not name a libcare build)"
    jq -n '{ran: false, why: "BENCH_PAUSE_LIBCARE does not name a libcare build (libcare is not packaged for Debian)"}'
    return 0
  fi
  if [[ -z $hot_list ]]; then
    jq -n '{ran: false, why: "BENCH_PAUSE_HOT is empty: no W0 rows to compare"}'
    return 0
  fi
  lc_tools=$(libcare_tools "$dir") ||
    { echo "bench/pause: BENCH_PAUSE_LIBCARE=$dir holds no built libcare (libcare-ctl, libcare-patch-make, kpatch_gensrc)" >&2; return 1; }
  log "libcare comparison: building W0 and its fix with libcare's tools"
  libcare_build "$work/hot/src" "$work/hot/fix-hot.patch" "$work/hot-libcare" "$lc_tools" || return 1
  local nthr r rounds="$work/cmp-rounds.jsonl" runs=${BENCH_PAUSE_LIBCARE_RUNS:-20}
  : > "$rounds"
  for nthr in $hot_list; do
    log "libcare comparison: $nthr worker(s), $runs rounds, livesplice and libcare alternating, fresh target each"
    for ((r = 0; r < runs; r++)); do
      local tool order=(livesplice libcare)
      ((r % 2)) && order=(libcare livesplice)
      for tool in "${order[@]}"; do
        # Not in a pipeline: this shell starts (and must wait for) the target.
        cmp_round "$tool" "$nthr" > "$work/cmp-round.json"
        jq -c --argjson t "$nthr" '. + {threads: $t}' "$work/cmp-round.json" >> "$rounds"
      done
    done
  done
  jq -s --arg libcare "$(git -C "$lc_tools" describe --always --dirty 2>/dev/null || echo unknown)" '
    def stats: sort as $s | length as $n |
      if $n == 0 then null else
        { median: (if $n % 2 == 1 then $s[($n - 1) / 2] else ($s[$n / 2 - 1] + $s[$n / 2]) / 2 end),
          p90: $s[((0.9 * $n) | ceil) - 1], max: $s[-1], n: $n } end;
    def side: {
      runs: length,
      applied: map(select(.apply.ok)) | length,
      undone: map(select(.undo.ok)) | length,
      apply_gap_us: ([.[].apply | select(.ok) | .gap] | stats),
      undo_gap_us: ([.[].undo // empty | select(.ok) | .gap] | stats),
      control_gap_us: ([.[].control // empty] | stats),
      apply_wall_us: ([.[].apply.wall_us] | stats),
      own_pause_us: { apply: ([.[].apply.pause_us // empty] | stats), undo: ([.[].undo.pause_us // empty] | stats) },
      targets_ended: (map(.target) | group_by(.) | map({(.[0]): length}) | add),
      errors: ([.[].apply, .[].undo | select(. != null and .ok == false) | .error] | group_by(.) | map({(.[0]): length}) | add) };
    def ratio($l; $c; $k): if $l[$k] == null or $c[$k] == null or $c[$k] == 0 then null else ($l[$k] / $c[$k] * 1000 | round / 1000) end;
    group_by(.threads) | map(
      (map(select(.tool == "livesplice")) | side) as $l | (map(select(.tool == "libcare")) | side) as $c |
      { threads: .[0].threads, workload: "W0", livesplice: $l, libcare: $c,
        livesplice_over_libcare: {
          apply_gap: { median: ratio($l.apply_gap_us; $c.apply_gap_us; "median"), p90: ratio($l.apply_gap_us; $c.apply_gap_us; "p90"),
                       max: ratio($l.apply_gap_us; $c.apply_gap_us; "max") },
          undo_gap: { median: ratio($l.undo_gap_us; $c.undo_gap_us; "median"), p90: ratio($l.undo_gap_us; $c.undo_gap_us; "p90"),
                      max: ratio($l.undo_gap_us; $c.undo_gap_us; "max") } } }) |
    { ran: true, libcare_commit: $libcare,
      what: "W0 at each thread count: livesplice (hot wait, no retry) and libcare (libcare-ctl patch / unpatch) alternating on fresh targets of the same program; the pause is the largest gap the target'"'"'s timing thread saw over each apply and undo",
      rows: . }' "$rounds"
}
