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

ktool undo cmdline || fail "undo"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "/proc/cmdline after undo: '$(cat /proc/cmdline)'"
[ "$(ktool read cmdline_proc_show 16)" = "$code_before" ] || fail "bytes not restored"
echo "ok: /proc/cmdline restored"

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

# Let the kthread leave the function; now it applies.
echo 0 > /sys/module/ls_test/parameters/hold
sleep 1
ktool apply hold ls_test:ls_test_hold=ls_test:ls_test_hold_new || fail "apply after the task left"
ktool undo hold || fail "undo hold"
echo "ok: applied once the task left"

rmmod ls_test || fail "rmmod ls_test after undo"
rmmod livesplice || fail "rmmod livesplice with nothing applied"
echo "ok: modules unload when nothing is applied"
