# With full preemption (preempt=full), a task can be switched out anywhere in a
# function, leaving an interrupt frame on its stack: the check must find the interrupted
# instruction, not only return addresses.
fail() { echo "FAIL: $*"; exit 1; }

grep -q 'preempt=full' /proc/cmdline || fail "booted without preempt=full"
ktool load-core /modules/livesplice.ko || fail "loading livesplice.ko"
insmod /modules/ls_test.ko spin=1 || fail "insmod ls_test.ko spin=1"
sleep 1
before=$(ktool read ls_test:ls_test_spin 16)
rc=0
out=$(ktool apply spin ls_test:ls_test_spin=ls_test:ls_test_spin_new --retries 4 --delay 10 2>&1) || rc=$?
echo "   $out"
[ $rc -eq 2 ] || fail "apply while a task spins inside: exit $rc, expected 2"
echo "$out" | grep -q 'blocked_comm=ls_test_spin' || fail "spinning task not named"
echo "$out" | grep -q 'ls_test_spin+' || fail "blocking frame not in ls_test_spin"
[ "$(ktool read ls_test:ls_test_spin 16)" = "$before" ] || fail "bytes changed by a refused apply"
echo "ok: a preempted task inside the function blocks"

echo 0 > /sys/module/ls_test/parameters/spin
sleep 1
ktool apply spin ls_test:ls_test_spin=ls_test:ls_test_spin_new || fail "apply after the spin ended"
ktool undo spin || fail "undo"
echo "ok: applied once it left"
