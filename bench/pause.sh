#!/usr/bin/env bash
# The pause benchmark: how long `livesplice apply` and `livesplice undo` stop a running
# process, as livesplice itself reports it (pause_us: from the first thread stopped to
# the last resumed), for 1, 16, 64 and 256 threads x 1, 10 and 100 replaced functions.
#
#   bench/pause.sh BUILD_DIR OUT.json
#
# For each number of functions F a C program is generated (F small functions called
# through a table by every thread; Debian's hardening flags), built with make, and one
# update replacing all F functions is made with `livesplice create`. For each number of
# threads the program is started once and the update is applied and undone
# BENCH_PAUSE_RUNS times (default 30, after one warm-up) on that same process;
# median, p99 (nearest rank), min, max and mean are reported for apply and for undo.
#
# The threads' load: "sleepy" (default matrix): each thread calls every function, spins
# a little and sleeps 10 ms, like a server with light traffic. "busy": no sleep, every
# thread always runnable (on a machine with fewer CPUs than threads, most wait for a CPU
# turn when the stop comes, the case that costs most). BENCH_PAUSE_THREADS,
# BENCH_PAUSE_FUNCTIONS and BENCH_PAUSE_BUSY (threads for the busy rows, F = 1) override
# the matrix (an empty BENCH_PAUSE_BUSY drops the busy rows, an empty
# BENCH_PAUSE_FUNCTIONS all the rows of this matrix). "idle": each thread sleeps
# 1 s between rounds, like a server's idle worker pool: what stopping threads that sleep
# costs (BENCH_PAUSE_IDLE, default 256: threads for the idle rows, every F; empty drops
# them).
#
# The pause as the program feels it: the program has a timing thread that sleeps 200 us
# at a time and records the largest gap between two of its wake-ups (the way peers'
# pauses are measured, from inside the target). It runs at SCHED_FIFO 50, as cyclictest
# does, so that only being kept stopped delays it, not the CPU the tool's own work and
# the workers take on a small machine (BENCH_PAUSE_TIMER=other: at normal priority; the
# JSON's timer_policy says which it got). For each apply + undo it reports the
# largest gap seen meanwhile (gap_us), and for a window as long with nothing done to the
# program (control_gap_us); gap_over_control is their medians' ratio.
#
# And as request latency of a loaded server (bench/server: the accept loop in the main
# thread, an idle pool, a parked thread): two copies run, one is updated and restored
# over and over for BENCH_PAUSE_SERVER_SECONDS (default 20; 0 drops these rows) while
# bench-server-load sends both the same load (BENCH_PAUSE_SERVER_CONNECTIONS client
# threads, default 4); p99 and largest latency of each, and their ratios, updated over
# control.
#
# And W0, hot functions (BENCH_PAUSE_HOT threads, default "1 16"; empty drops it): each
# worker calls hot() in a loop, and hot() spins 1 ms between 50 us naps, so a worker is
# inside it ~95% of the time. BENCH_PAUSE_HOT_RUNS (default 20) applies and undoes,
# each with no retry (the hot wait must do it in one attempt); then as many with the hot
# wait off (--hot-wait 0, the default 20 retries: stop, find a thread inside, resume,
# retry), for comparison. Reported: how many succeeded, the longest any thread was kept
# from running (pause_us, the longest wait at an entry included), and the largest gap
# the program's timing thread saw. Beside these rows, when BENCH_PAUSE_LIBCARE names a
# libcare build (not packaged for Debian; bench/pause-libcare.sh says how it is driven),
# libcare on the same workload and fix, alternating with livesplice, the pause measured
# from inside the target for both; without it the JSON says the comparison did not run.
#
# Beside each row, the phases apply reports: the program thread lent for the mapping
# (pause_phases_us.map: how long it was kept from running for the clone of livesplice's
# parked thread, or the whole batch of calls where the target cannot have one — none of
# its hold when it slept through it, waiting for a signal that did not come — and
# apply_lent_held_us, how long it was stopped) and the splice's stop, and their medians'
# ratio (map_over_splice); and how long the parked thread lived (it holds no thread of
# the program).
#
# Beside each row, the floor (bench/stop_floor.cc): a bare ptrace stop and resume of the
# same process, hot, with nothing checked or written, and the ratio apply / floor: what
# livesplice adds to the cost of stopping the threads at all, which is the machine's.
# And the machine's floor for any tool that stops every thread: the kernel's own group
# stop (SIGSTOP until the last thread is stopped, then SIGCONT) of a fresh copy of the
# same program, with no tracer at all (group_stop_us).
#
# Targets: median under 100 us for 1 thread / 1 function, under 1 ms for 256 threads /
# 10 functions. For scale, Ksplice reported a 0.7 ms pause for kernel updates.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "$1" && pwd)
out=$2
runs=${BENCH_PAUSE_RUNS:-30}
threads_list=${BENCH_PAUSE_THREADS:-1 16 64 256}
functions_list=${BENCH_PAUSE_FUNCTIONS-1 10 100}
busy_list=${BENCH_PAUSE_BUSY-1 16}
idle_list=${BENCH_PAUSE_IDLE-256}
ls_bin="$build/livesplice"
export BENCH_PAUSE_TIMER=${BENCH_PAUSE_TIMER:-fifo}
floor_bin="$build/bench/bench-stop-floor"
load_bin="$build/bench/bench-server-load"
server_seconds=${BENCH_PAUSE_SERVER_SECONDS:-20}
server_connections=${BENCH_PAUSE_SERVER_CONNECTIONS:-4}
for b in "$floor_bin" "$load_bin"; do
  [[ -x $b ]] || { echo "bench/pause: $b is missing (cmake --build BUILD --target $(basename "$b"))" >&2; exit 1; }
done
log() { echo "==> $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/livesplice-bench-pause.XXXXXX")
target_pid=
control_pid=
cleanup() {
  local p
  for p in $target_pid $control_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- the program: F functions, T threads calling them ----------------------------------
# gen_tree DIR F: writes funcs.c (function k returns x * 3 + 1000 + k: long enough for
# a 5-byte jump after its endbr64), main.c, Makefile, and fix-F.patch (x * 3 + 2000 + k).
gen_tree() {
  local dir=$1 n=$2 k
  mkdir -p "$dir"
  {
    echo "/* Generated by bench/pause.sh: the $n functions the update replaces. */"
    echo '#include "funcs.h"'
    for ((k = 0; k < n; k++)); do printf 'int f%d(int x)\n{\n\treturn x * 3 + 1000 + %d;\n}\n' "$k" "$k"; done
  } > "$dir/funcs.c"
  {
    for ((k = 0; k < n; k++)); do echo "int f$k(int x);"; done
    echo "#define FUNCTIONS { $(for ((k = 0; k < n; k++)); do printf 'f%d, ' "$k"; done)}"
  } > "$dir/funcs.h"
  cat > "$dir/main.c" <<'EOF'
/* Generated by bench/pause.sh. prog THREADS sleepy|busy|idle: every thread calls every
 * function through a table, spins a little, and sleeps 10 ms (sleepy), not at all
 * (busy) or 1 s (idle), forever. A timing thread sleeps 200 us at a time and keeps
 * the largest gap between two of its wake-ups; on SIGUSR1 it prints "gap US" (the
 * largest since the last report) and starts over. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "funcs.h"

static int (*const table[])(int) = FUNCTIONS;
static volatile unsigned long sink;
static long nap_ns = 10 * 1000 * 1000;
static volatile sig_atomic_t report;

static void on_usr1(int sig)
{
	(void)sig;
	report = 1;
}

static long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *timer(void *arg)
{
	long last = now_ns(), largest = 0;

	(void)arg;
	/* SCHED_FIFO (BENCH_PAUSE_TIMER=fifo, the default), the way cyclictest measures:
	 * then nothing but being stopped keeps this thread from its wake-ups, and the gap
	 * is the pause a tool imposes, not the CPU the tool and the workers compete for. */
	const char *policy = getenv("BENCH_PAUSE_TIMER");
	if (!policy || strcmp(policy, "other") != 0) {
		struct sched_param p = { .sched_priority = 50 };
		int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p);
		if (err) {   /* never measure something else than was asked for */
			printf("timer: SCHED_FIFO refused: %s (BENCH_PAUSE_TIMER=other measures at normal priority)\n",
			       strerror(err));
			fflush(stdout);
			exit(1);
		}
		printf("timer fifo\n");
	} else {
		printf("timer other\n");
	}
	fflush(stdout);
	for (;;) {
		struct timespec ts = { 0, 200 * 1000 };
		nanosleep(&ts, NULL);
		long now = now_ns();
		if (now - last > largest)
			largest = now - last;
		last = now;
		if (report) {
			report = 0;
			printf("gap %ld\n", largest / 1000);
			fflush(stdout);
			largest = 0;
			last = now_ns();
		}
	}
	return NULL;
}

static void *worker(void *arg)
{
	unsigned long mix = (unsigned long)arg;

	for (int i = 0;; i++) {
		for (size_t k = 0; k < sizeof table / sizeof table[0]; k++) {
			mix += (unsigned long)table[k](i);
			for (int j = 0; j < 200; j++)
				mix = mix * 6364136223846793005UL + 1442695040888963407UL;
		}
		sink = mix;
		if (nap_ns) {
			struct timespec ts = { nap_ns / 1000000000L, nap_ns % 1000000000L };
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 1;
	pthread_t t;

	if (argc > 2 && strcmp(argv[2], "busy") == 0)
		nap_ns = 0;
	if (argc > 2 && strcmp(argv[2], "idle") == 0)
		nap_ns = 1000L * 1000 * 1000;
	signal(SIGUSR1, on_usr1);
	if (pthread_create(&t, NULL, timer, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	for (long i = 0; i < threads; i++)
		if (pthread_create(&t, NULL, worker, (void *)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	printf("ready: %d threads\n", threads);
	fflush(stdout);
	for (;;)
		pause();
}
EOF
  cat > "$dir/Makefile" <<'EOF'
CFLAGS   ?= -O2 -g -fstack-protector-strong -fcf-protection -D_FORTIFY_SOURCE=2
LDFLAGS  ?= -Wl,-z,relro -Wl,-z,now

prog: main.o funcs.o
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ main.o funcs.o

%.o: %.c funcs.h
	$(CC) $(CFLAGS) -pthread -c -o $@ $<
EOF
  sed -E 's/return x \* 3 \+ 1000 \+ ([0-9]+);/return x * 3 + 2000 + \1;/' "$dir/funcs.c" > "$work/funcs.post.c"
  diff -u "$dir/funcs.c" "$work/funcs.post.c" | sed '1,2c--- a/funcs.c\n+++ b/funcs.c' > "$dir/../fix-$n.patch" || true
}

# gap_of PID OUT: asks the program's timing thread for the largest gap it saw since its
# last report (SIGUSR1) and prints it, in us.
gap_of() {
  local pid=$1 out=$2 before i
  before=$(grep -c '^gap ' "$out" || true)
  kill -USR1 "$pid"
  for ((i = 0; i < 1000; i++)); do
    [[ $(grep -c '^gap ' "$out" || true) -gt $before ]] && break
    sleep 0.002
  done
  grep '^gap ' "$out" | tail -n 1 | cut -d' ' -f2
}

# --- one configuration -------------------------------------------------------------------
# measure DIR PATCH F T LOAD: prints one JSON object.
measure() {
  local dir=$1 update=$2 nfun=$3 nthr=$4 load=$5 r
  local samples="$work/samples-$nfun-$nthr-$load"
  : > "$samples"
  "$dir/prog" "$nthr" "$load" > "$work/prog.out" 2>&1 &
  target_pid=$!
  for ((r = 0; r < 500; r++)); do
    grep -qs '^ready' "$work/prog.out" && break
    sleep 0.01
  done
  grep -qs '^ready' "$work/prog.out" || { echo "bench/pause: program did not start: $(cat "$work/prog.out")" >&2; return 1; }
  # The machine's own load, which says how much these figures are worth.
  local loadavg
  loadavg=$(cut -d' ' -f1 /proc/loadavg)
  for ((r = 0; r <= runs; r++)); do   # run 0 is a warm-up
    local a u gap control t0 t1
    gap_of "$target_pid" "$work/prog.out" >/dev/null   # starts a window
    t0=$(date +%s%N)
    if ! a=$("$ls_bin" -q apply --pid "$target_pid" "$update" --retries 100 --json 2>"$work/err"); then
      echo "bench/pause: apply failed ($nthr threads, $nfun functions, $load): $(cat "$work/err")" >&2; return 1
    fi
    if ! u=$("$ls_bin" -q undo --pid "$target_pid" --retries 100 --json 2>"$work/err"); then
      echo "bench/pause: undo failed ($nthr threads, $nfun functions, $load): $(cat "$work/err")" >&2; return 1
    fi
    t1=$(date +%s%N)
    gap=$(gap_of "$target_pid" "$work/prog.out")
    # The control: a window as long with nothing done to the program.
    sleep "$(( (t1 - t0) / 1000000000 )).$(printf '%09d' $(( (t1 - t0) % 1000000000 )))"
    control=$(gap_of "$target_pid" "$work/prog.out")
    [[ $r -eq 0 ]] && continue
    jq -c -n --argjson a "$a" --argjson u "$u" --argjson gap "$gap" --argjson control "$control" \
      '{apply: $a.pause_us, attempts: $a.attempts, apply_ms: $a.prepare_ms, undo: $u.undone[0].pause_us,
        map: $a.pause_phases_us.map, held: ($a.borrowed.held_us // $a.pause_phases_us.map),
        splice: $a.pause_phases_us.splice, parked: ($a.parked.us // 0),
        gap: $gap, control: $control}' >> "$samples"
  done
  # The yardstick: a bare stop and resume of the same process (bench/stop_floor.cc).
  local floor
  floor=$("$floor_bin" "$target_pid" "$runs") || { echo "bench/pause: bench-stop-floor failed" >&2; return 1; }
  kill "$target_pid"; wait "$target_pid" 2>/dev/null || true; target_pid=
  # The machine's floor: the kernel's own group stop and continue of a fresh copy of the
  # program, no tracer (bench-stop-floor --group-stop).
  local group
  group=$("$floor_bin" --group-stop "$runs" -- "$dir/prog" "$nthr" "$load") ||
    { echo "bench/pause: bench-stop-floor --group-stop failed" >&2; return 1; }
  jq -s --argjson f "$nfun" --argjson t "$nthr" --arg load "$load" --argjson loadavg "$loadavg" --argjson floor "$floor" --argjson group "$group" '
    def stats: sort as $s | length as $n |
      { median: (if $n % 2 == 1 then $s[($n - 1) / 2] else ($s[$n / 2 - 1] + $s[$n / 2]) / 2 end),
        p99: $s[((0.99 * $n) | ceil) - 1], min: $s[0], max: $s[-1], mean: (add / $n) }
      | map_values(. * 10 | round / 10);
    { threads: $t, functions: $f, load: $load, runs: length, machine_load_average_1m: $loadavg,
      apply_pause_us: (map(.apply) | stats), undo_pause_us: (map(.undo) | stats),
      apply_map_phase_us: (map(.map) | stats), apply_lent_held_us: (map(.held) | stats),
      apply_splice_phase_us: (map(.splice) | stats),
      map_over_splice: ((map(.map) | stats).median / ((map(.splice) | stats).median) * 100 | round / 100),
      parked_thread_us: (map(.parked) | stats),
      gap_us: (map(.gap) | stats), control_gap_us: (map(.control) | stats),
      gap_over_control: ((map(.gap) | stats).median / ((map(.control) | stats).median) * 100 | round / 100),
      apply_attempts_max: (map(.attempts) | max),
      stop_floor_us: ($floor | {median: .median_us, min: .min_us, max: .max_us}),
      apply_over_floor: ((map(.apply) | stats).median / $floor.median_us * 100 | round / 100),
      group_stop_us: ($group | {median: .median_us, min: .min_us, max: .max_us}),
      apply_wall_ms_median: (map(.apply_ms) | sort | .[length / 2 | floor] * 10 | round / 10) }' "$samples"
}

results="$work/results.jsonl"
: > "$results"
for nfun in $functions_list; do
  dir="$work/f$nfun/src"
  gen_tree "$dir" "$nfun"
  make -s -C "$dir"
  log "creating the update for $nfun function(s)"
  "$ls_bin" -q create --source "$dir" --patch "$work/f$nfun/fix-$nfun.patch" -o "$work/f$nfun/u.lsu" >/dev/null
  for nthr in $threads_list; do
    log "measuring: $nthr thread(s), $nfun function(s), sleepy ($runs apply + undo)"
    measure "$dir" "$work/f$nfun/u.lsu" "$nfun" "$nthr" sleepy >> "$results"
  done
  for nthr in $idle_list; do
    log "measuring: $nthr thread(s), $nfun function(s), idle ($runs apply + undo)"
    measure "$dir" "$work/f$nfun/u.lsu" "$nfun" "$nthr" idle >> "$results"
  done
  if [[ $nfun == 1 ]]; then
    for nthr in $busy_list; do
      log "measuring: $nthr thread(s), $nfun function(s), busy ($runs apply + undo)"
      measure "$dir" "$work/f$nfun/u.lsu" "$nfun" "$nthr" busy >> "$results"
    done
  fi
done

# --- W0: hot functions ------------------------------------------------------------------
# gen_hot DIR: a program whose workers are inside hot() ~95% of the time, with the timing
# thread of gen_tree's program; and DIR/../fix-hot.patch.
gen_hot() {
  local dir=$1
  mkdir -p "$dir"
  cat > "$dir/hot.c" <<'EOF'
/* Generated by bench/pause.sh: the function the update replaces, spinning 1 ms. */
#include <time.h>

int hot(int x)
{
	struct timespec t;
	long until;

	clock_gettime(CLOCK_MONOTONIC, &t);
	until = t.tv_sec * 1000000000L + t.tv_nsec + 1000000;
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while (t.tv_sec * 1000000000L + t.tv_nsec < until);
	return x + 1000;
}
EOF
  sed 's/return x + 1000;/return x + 2000;/' "$dir/hot.c" > "$work/hot.post.c"
  diff -u "$dir/hot.c" "$work/hot.post.c" | sed '1,2c--- a/hot.c\n+++ b/hot.c' > "$dir/../fix-hot.patch" || true
  # gen_tree's main, its table holding hot() and its workers napping 50 us, not 10 ms.
  gen_tree "$work/hot-main/src" 1
  sed -e 's/#include "funcs.h"/int hot(int x);\n#define FUNCTIONS { hot }/' -e 's/j < 200;/j < 0;/' \
    -e 's/static long nap_ns = 10 \* 1000 \* 1000;/static long nap_ns = 50 * 1000;/' "$work/hot-main/src/main.c" > "$dir/main.c"
  sed -e 's/funcs\.o/hot.o/g' -e 's/ funcs\.h//' "$work/hot-main/src/Makefile" > "$dir/Makefile"
}

# measure_hot DIR UPDATE T: prints one JSON object.
measure_hot() {
  local dir=$1 update=$2 nthr=$3 r mode
  "$dir/prog" "$nthr" sleepy > "$work/prog.out" 2>&1 &
  target_pid=$!
  for ((r = 0; r < 500; r++)); do grep -qs '^ready' "$work/prog.out" && break; sleep 0.01; done
  grep -qs '^ready' "$work/prog.out" || { echo "bench/pause: W0 did not start: $(cat "$work/prog.out")" >&2; return 1; }
  for mode in hot plain; do
    local opts=(--retries 0) samples="$work/hot-$nthr-$mode"
    [[ $mode == plain ]] && opts=(--hot-wait 0)
    : > "$samples"
    for ((r = 0; r < hot_runs; r++)); do
      local a= u= ok_a=false ok_u=false gap
      gap_of "$target_pid" "$work/prog.out" >/dev/null
      a=$("$ls_bin" -q apply --pid "$target_pid" "$update" "${opts[@]}" --json 2>/dev/null) && ok_a=true
      if $ok_a; then
        u=$("$ls_bin" -q undo --pid "$target_pid" "${opts[@]}" --json 2>/dev/null) && ok_u=true
        # Left applied, the next apply would stack on it.
        $ok_u || "$ls_bin" -q undo --pid "$target_pid" --retries 1000 --retry-delay 1 >/dev/null 2>&1 ||
          { echo "bench/pause: W0 could not undo" >&2; return 1; }
      fi
      gap=$(gap_of "$target_pid" "$work/prog.out")
      $ok_a || a=null
      $ok_u || u=null
      jq -c -n --argjson ok_a "$ok_a" --argjson ok_u "$ok_u" --argjson gap "$gap" --argjson a "$a" --argjson u "$u" \
        '{ok_a: $ok_a, ok_u: $ok_u, gap: $gap, apply: ($a.pause_us // null), undo: ($u.undone[0].pause_us // null)}' \
        >> "$samples"
    done
  done
  kill "$target_pid"; wait "$target_pid" 2>/dev/null || true; target_pid=
  jq -n --argjson t "$nthr" --slurpfile hot "$work/hot-$nthr-hot" --slurpfile plain "$work/hot-$nthr-plain" '
    def row: { runs: length, applied: (map(select(.ok_a)) | length), undone: (map(select(.ok_u)) | length),
               apply_pause_us_max: ([.[].apply // empty] | max), undo_pause_us_max: ([.[].undo // empty] | max),
               apply_pause_us_median: ([.[].apply // empty] | sort | .[length / 2 | floor]),
               undo_pause_us_median: ([.[].undo // empty] | sort | .[length / 2 | floor]),
               gap_us_max: (map(.gap) | max), gap_us_median: (map(.gap) | sort | .[length / 2 | floor]) };
    { threads: $t, workload: "W0", hot_wait: ($hot | row), without_hot_wait: ($plain | row) }'
}

hot_json="$work/hot.json"
echo '[]' > "$hot_json"
hot_list=${BENCH_PAUSE_HOT-1 16}
if [[ -n $hot_list ]]; then
  hot_runs=${BENCH_PAUSE_HOT_RUNS:-20}
  gen_hot "$work/hot/src"
  make -s -C "$work/hot/src"
  log "creating W0's update"
  "$ls_bin" -q create --source "$work/hot/src" --patch "$work/hot/fix-hot.patch" -o "$work/hot/u.lsu" >/dev/null
  : > "$work/hot.jsonl"
  for nthr in $hot_list; do
    log "measuring W0: $nthr worker(s) inside hot() ~95% of the time ($hot_runs apply + undo, with and without the hot wait)"
    measure_hot "$work/hot/src" "$work/hot/u.lsu" "$nthr" >> "$work/hot.jsonl"
  done
  jq -s . "$work/hot.jsonl" > "$hot_json"
fi

# --- W0 beside libcare, when told where a libcare build is (bench/pause-libcare.sh) -------
source "$here/pause-libcare.sh"
libcare_compare > "$work/libcare.json"

# --- the loaded server: request latency while it is updated, against a control copy -------
# start_server DIR OUT: starts DIR/server, waits for its port; sets server_pid, prints the port.
start_server() {
  local dir=$1 out=$2 r
  "$dir/server" > "$out" 2>&1 &
  server_pid=$!
  for ((r = 0; r < 500; r++)); do grep -qs '^port' "$out" && break; sleep 0.01; done
  grep -qs '^port' "$out" || { echo "bench/pause: server did not start: $(cat "$out")" >&2; return 1; }
  cut -d' ' -f2 < "$out"
}

server_json="$work/server.json"
echo null > "$server_json"
if [[ $server_seconds != 0 ]]; then
  sdir="$work/server/src"
  mkdir -p "$work/server"
  cp -r "$here/server" "$sdir"
  make -s -C "$sdir"
  log "creating the server's update"
  "$ls_bin" -q create --source "$sdir" --patch "$here/server/fix.patch" -o "$work/server/u.lsu" >/dev/null
  start_server "$sdir" "$work/target.out" > "$work/target.port"; target_pid=$server_pid
  start_server "$sdir" "$work/control.out" > "$work/control.port"; control_pid=$server_pid
  tport=$(cat "$work/target.port"); cport=$(cat "$work/control.port")
  log "loaded server: $server_seconds s of load on both copies, apply + undo of one over and over"
  "$load_bin" "$server_seconds" "$server_connections" "$tport" "$cport" > "$work/load.json" &
  load_pid=$!
  sleep 1   # the load first
  cycles="$work/cycles.jsonl"
  : > "$cycles"
  end=$(( $(date +%s) + server_seconds - 2 ))
  while (( $(date +%s) < end )); do
    a=$("$ls_bin" -q apply --pid "$target_pid" "$work/server/u.lsu" --retries 100 --json 2>"$work/err") ||
      { echo "bench/pause: server apply failed: $(cat "$work/err")" >&2; exit 1; }
    u=$("$ls_bin" -q undo --pid "$target_pid" --retries 100 --json 2>"$work/err") ||
      { echo "bench/pause: server undo failed: $(cat "$work/err")" >&2; exit 1; }
    jq -c -n --argjson a "$a" --argjson u "$u" '{apply: $a.pause_us, map: $a.pause_phases_us.map, undo: $u.undone[0].pause_us}' >> "$cycles"
  done
  wait "$load_pid"
  kill "$target_pid" "$control_pid"; wait "$target_pid" "$control_pid" 2>/dev/null || true; target_pid= control_pid=
  jq -s --slurpfile load "$work/load.json" --arg t "$tport" --arg c "$cport" --argjson seconds "$server_seconds" \
    --argjson conns "$server_connections" '
    ($load[0][$t]) as $u | ($load[0][$c]) as $k |
    { seconds: $seconds, client_threads: $conns, cycles: length,
      apply_pause_us_max: (map(.apply) | max), apply_map_phase_us_max: (map(.map) | max),
      undo_pause_us_max: (map(.undo) | max),
      updated: $u, control: $k,
      p99_over_control: ($u.p99_us / $k.p99_us * 100 | round / 100),
      max_over_control: ($u.max_us / $k.max_us * 100 | round / 100) }' "$cycles" > "$server_json"
fi

jq -s --argjson cpus "$(nproc)" --slurpfile server "$server_json" --slurpfile hot "$hot_json" \
  --slurpfile libcare "$work/libcare.json" '
  def row($t; $f): map(select(.threads == $t and .functions == $f and .load == "sleepy")) | first;
  {
    benchmark: "pause",
    what: "pause of livesplice apply and undo (pause_us as reported: first thread stopped to last resumed), same process, repeated",
    cpus: $cpus,
    timer_policy: env.BENCH_PAUSE_TIMER,
    configurations: .,
    loaded_server: $server[0],
    hot_functions: $hot[0],
    libcare_comparison: $libcare[0],
    targets: [
      { what: "apply median, 1 thread / 1 function", below_us: 100,
        measured_us: (row(1; 1).apply_pause_us.median // null),
        met: ((row(1; 1).apply_pause_us.median // 1e18) < 100),
        kernel_group_stop_us: (row(1; 1).group_stop_us.median // null) },
      { what: "apply median, 256 threads / 10 functions", below_us: 1000,
        measured_us: (row(256; 10).apply_pause_us.median // null),
        met: ((row(256; 10).apply_pause_us.median // 1e18) < 1000),
        kernel_group_stop_us: (row(256; 10).group_stop_us.median // null) }
    ],
    reference: { ksplice_kernel_pause_us: 700 }
  }' "$results" > "$out"

# A table for people.
{
  printf '\n%-8s %-5s %-7s | %-33s | %-33s | %-12s | %s\n' threads funcs load \
    "apply pause us: median p99 min max" "undo pause us: median p99 min max" "attempts max" "floor us (apply/floor)" "group stop us"
  jq -r '.configurations[] | [.threads, .functions, .load,
          .apply_pause_us.median, .apply_pause_us.p99, .apply_pause_us.min, .apply_pause_us.max,
          .undo_pause_us.median, .undo_pause_us.p99, .undo_pause_us.min, .undo_pause_us.max,
          .apply_attempts_max, .stop_floor_us.median, .apply_over_floor, .group_stop_us.median] | @tsv' "$out" |
    while IFS=$'\t' read -r t f l am ap an ax um up un ux at fm fr gs; do
      printf '%-8s %-5s %-7s | %8s %8s %7s %8s | %8s %8s %7s %8s | %-12s | %s (%sx) | %s\n' "$t" "$f" "$l" "$am" "$ap" "$an" "$ax" "$um" "$up" "$un" "$ux" "$at" "$fm" "$fr" "$gs"
    done
  jq -r '.targets[] | "target: \(.what) below \(.below_us) us: measured \(.measured_us) us, \(if .met then "met" else "NOT met" end) (the kernel'"'"'s own group stop and continue of such a process: \(.kernel_group_stop_us) us)"' "$out"
  echo "reference: Ksplice reported a 0.7 ms pause for kernel updates"
  jq -r '.configurations[] | "phases of apply, \(.threads) threads \(.functions) functions \(.load): program thread lent for the mapping kept from running (map) median \(.apply_map_phase_us.median) us (held \(.apply_lent_held_us.median) us), splice median \(.apply_splice_phase_us.median) us (map/splice \(.map_over_splice)x); livesplice'"'"'s parked thread lived \(.parked_thread_us.median) us (holds no program thread)"' "$out"
  jq -r '.configurations[] | "in-target gap, \(.threads) threads \(.functions) functions \(.load): median \(.gap_us.median) us, control \(.control_gap_us.median) us (\(.gap_over_control)x); max \(.gap_us.max) us, control \(.control_gap_us.max) us"' "$out"
  jq -r '.hot_functions[] | "W0, \(.threads) worker(s) inside hot() ~95%: with the hot wait applied \(.hot_wait.applied)/\(.hot_wait.runs), undone \(.hot_wait.undone)/\(.hot_wait.applied), pause median \(.hot_wait.apply_pause_us_median) / \(.hot_wait.undo_pause_us_median) us, max \(.hot_wait.apply_pause_us_max) / \(.hot_wait.undo_pause_us_max) us (apply / undo), in-target gap max \(.hot_wait.gap_us_max) us (median \(.hot_wait.gap_us_median)); without it (20 retries) applied \(.without_hot_wait.applied)/\(.without_hot_wait.runs), undone \(.without_hot_wait.undone)/\(.without_hot_wait.applied)"' "$out"
  jq -r '.libcare_comparison | if .ran then .rows[] | . as $r |
      (["apply", "undo"] | map(. as $op | "W0 beside libcare, \($r.threads) worker(s), \($op): " +
        ([["livesplice", $r.livesplice], ["libcare", $r.libcare]] | map(.[1] as $s |
          "\(.[0]) \(if $op == "apply" then $s.applied else $s.undone end)/\($s.runs) ok, in-target pause median \($s[$op + "_gap_us"].median) p90 \($s[$op + "_gap_us"].p90) max \($s[$op + "_gap_us"].max) us") | join("; ")) +
        "; livesplice / libcare: median \($r.livesplice_over_libcare[$op + "_gap"].median), max \($r.livesplice_over_libcare[$op + "_gap"].max)") | .[]),
      "W0 beside libcare, \($r.threads) worker(s): control gap median \($r.livesplice.control_gap_us.median) / \($r.libcare.control_gap_us.median) us (livesplice / libcare rounds); libcare targets: \($r.libcare.targets_ended | tojson); libcare errors: \($r.libcare.errors | tojson)"
    else "libcare comparison: not run (\(.why))" end' "$out"
  jq -r 'select(.loaded_server != null) | .loaded_server | "loaded server, \(.cycles) apply+undo cycles in \(.seconds) s: p99 \(.updated.p99_us) us vs control \(.control.p99_us) us (\(.p99_over_control)x), max \(.updated.max_us) us vs \(.control.max_us) us (\(.max_over_control)x); failed \(.updated.failed) vs \(.control.failed); longest apply pause \(.apply_pause_us_max) us (map phase \(.apply_map_phase_us_max) us)"' "$out"
} >&2
