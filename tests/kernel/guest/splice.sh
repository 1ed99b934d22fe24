# livesplice.ko: redirect a real kernel function, see it, undo, see it restored; and a
# refusal while a task sits inside the function to be replaced.
fail() { echo "FAIL: $*"; exit 1; }

ktool load-core /modules/livesplice.ko || fail "loading livesplice.ko"
[ -c /dev/livesplice ] || fail "/dev/livesplice missing"
insmod /modules/ls_test.ko || fail "insmod ls_test.ko"

before=$(cat /proc/cmdline)
code_before=$(ktool read cmdline_proc_show 16)
ktool apply cmdline cmdline_proc_show=ls_test:ls_test_cmdline_proc_show || fail "apply"
now=$(cat /proc/cmdline)
[ "$now" = "livesplice: cmdline replaced" ] || fail "/proc/cmdline after apply: '$now'"
echo "ok: /proc/cmdline replaced"
code_now=$(ktool read cmdline_proc_show 16)
echo "   cmdline_proc_show: $code_before -> $code_now"
case $code_now in 0f1f440000e9*) ;; *) fail "no jmp after the fentry NOP";; esac
ktool list | grep -q '^cmdline cmdline_proc_show+0x5 -> ls_test_cmdline_proc_show' || fail "list: $(ktool list)"
if rmmod ls_test 2>/dev/null; then fail "ls_test unloaded while its code is spliced in"; fi
if rmmod livesplice 2>/dev/null; then fail "livesplice unloaded while a set is applied"; fi
if ktool apply again cmdline_proc_show=ls_test:ls_test_cmdline_proc_show; then fail "a site redirected twice"; fi
if ktool apply data cmdline_proc_show=ls_test:hold; then fail "redirected to a data symbol"; fi

ktool undo cmdline || fail "undo"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "/proc/cmdline after undo: '$(cat /proc/cmdline)'"
[ "$(ktool read cmdline_proc_show 16)" = "$code_before" ] || fail "bytes not restored"
echo "ok: /proc/cmdline restored"

# ftrace owns the fentry bytes and we write after them: tracing the function while it
# is redirected keeps working, and turning tracing off rewrites them under our jump.
T=/sys/kernel/tracing
mount -t tracefs tracefs $T || fail "mount tracefs"
echo cmdline_proc_show > $T/set_ftrace_filter || fail "set_ftrace_filter"
echo function > $T/current_tracer || fail "function tracer"
case $(ktool read cmdline_proc_show 5) in e8*) ;; *) fail "traced, but no call at the fentry site";; esac
[ "$(ktool offset cmdline_proc_show)" = 5 ] || fail "traced: splice offset is not 5"
ktool apply traced cmdline_proc_show=ls_test:ls_test_cmdline_proc_show || fail "apply while traced"
[ "$(cat /proc/cmdline)" = "livesplice: cmdline replaced" ] || fail "traced: not replaced"
grep -q 'cmdline_proc_show <-' $T/trace || fail "the redirected function is no longer traced"
echo nop > $T/current_tracer || fail "tracer off"
echo > $T/set_ftrace_filter
[ "$(ktool read cmdline_proc_show 5)" = 0f1f440000 ] || fail "ftrace did not restore its NOP"
[ "$(cat /proc/cmdline)" = "livesplice: cmdline replaced" ] || fail "tracer off: redirect lost"
ktool undo traced || fail "undo after tracing"
[ "$(ktool read cmdline_proc_show 16)" = "$code_before" ] || fail "traced: bytes not restored"
echo "ok: ftrace and the redirect coexist"

# Stacking: a second update redirects the first one's replacement; the first cannot be
# undone while the second jumps out of its code; undo goes newest first.
ktool apply one cmdline_proc_show=ls_test:ls_test_cmdline_proc_show || fail "apply one"
ktool apply two ls_test:ls_test_cmdline_proc_show=ls_test:ls_test_cmdline_proc_show2 || fail "apply two"
[ "$(cat /proc/cmdline)" = "livesplice: cmdline replaced twice" ] || fail "stacked: '$(cat /proc/cmdline)'"
rc=0; ktool undo one || rc=$?
[ $rc -ne 0 ] || fail "undid one under two"
ktool undo two || fail "undo two"
[ "$(cat /proc/cmdline)" = "livesplice: cmdline replaced" ] || fail "after undo two: '$(cat /proc/cmdline)'"
ktool undo one || fail "undo one"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "after undo one: '$(cat /proc/cmdline)'"
echo "ok: stacked updates, undone newest first"

# The kthread ls_test_hold sleeps inside ls_test_hold: every attempt must be refused,
# naming it, with exit code 2 and nothing written.
hold_before=$(ktool read ls_test:ls_test_hold 16)
rc=0
out=$(ktool apply hold ls_test:ls_test_hold=ls_test:ls_test_hold_new --retries 2 --delay 10 2>&1) || rc=$?
echo "   $out"
[ $rc -eq 2 ] || fail "apply while a task is inside: exit $rc, expected 2"
echo "$out" | grep -q 'attempts=3' || fail "not 3 attempts"
echo "$out" | grep -q 'blocked_comm=ls_test_hold' || fail "blocking task not named"
[ "$(ktool read ls_test:ls_test_hold 16)" = "$hold_before" ] || fail "bytes changed by a refused apply"
echo "ok: refused while a task is inside"

# The idle threads sit in schedule_idle and are on no task list: redirecting it must be
# refused (were it written, the idle loop would stop scheduling and the guest hang).
rc=0
out=$(ktool apply idle schedule_idle=ls_test:ls_test_hold_new --retries 1 --delay 10 2>&1) || rc=$?
echo "   $out"
[ $rc -eq 2 ] || fail "schedule_idle redirected (exit $rc)"
echo "$out" | grep -q 'blocked_comm=swapper/' || fail "idle thread not named"
echo "ok: the idle loop is checked"

# All or nothing: a set with one blocked function changes none of its functions.
rc=0
ktool apply both cmdline_proc_show=ls_test:ls_test_cmdline_proc_show \
  ls_test:ls_test_hold=ls_test:ls_test_hold_new --retries 1 --delay 10 || rc=$?
[ $rc -eq 2 ] || fail "apply of a set with a blocked function: exit $rc, expected 2"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "part of a refused set was applied"
[ "$(ktool read cmdline_proc_show 16)" = "$code_before" ] || fail "bytes changed by a refused set"
echo "ok: a refused set changes nothing"

# Let the kthread leave the function; now it applies.
echo 0 > /sys/module/ls_test/parameters/hold
sleep 1
ktool apply hold ls_test:ls_test_hold=ls_test:ls_test_hold_new || fail "apply after the task left"
ktool undo hold || fail "undo hold"
echo "ok: applied once the task left"

rmmod ls_test || fail "rmmod ls_test after undo"
rmmod livesplice || fail "rmmod livesplice with nothing applied"
echo "ok: modules unload when nothing is applied"

# The conservative check (stack_check=scan, every word of every stack): the sleeping
# task still blocks, found by the scan; the cmdline redirect still goes through.
ktool load-core /modules/livesplice.ko stack_check=scan || fail "loading livesplice.ko stack_check=scan"
insmod /modules/ls_test.ko || fail "insmod ls_test.ko again"
rc=0
out=$(ktool apply hold ls_test:ls_test_hold=ls_test:ls_test_hold_new --retries 1 --delay 10 2>&1) || rc=$?
echo "   $out"
[ $rc -eq 2 ] || fail "scan: apply while a task is inside: exit $rc"
echo "$out" | grep -q 'found by scanning its stack' || fail "scan: not found by the scan"
ktool apply cmdline cmdline_proc_show=ls_test:ls_test_cmdline_proc_show || fail "scan: apply cmdline"
[ "$(cat /proc/cmdline)" = "livesplice: cmdline replaced" ] || fail "scan: /proc/cmdline not replaced"
ktool undo cmdline || fail "scan: undo"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "scan: /proc/cmdline not restored"
echo "ok: the scanning check"
