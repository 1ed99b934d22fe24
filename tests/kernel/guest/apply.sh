# `livesplice apply --kernel` end to end, on updates made by `livesplice create --kernel`
# (run-match-test puts them in /updates): the new code becomes a kernel module
# (livesplice_<id>) the kernel's loader loads, the running function is redirected to it;
# view lists it; undo restores it and unloads the module; an update made from other
# source is refused by run-pre matching with nothing changed.
fail() { echo "FAIL: $*"; exit 1; }
# The running kernel's function (the update's module has one of the same name).
read_fn() { ktool read vmlinux:cmdline_proc_show 16; }
modules() { grep -o '^livesplice_[0-9a-f]*' /proc/modules; }

before=$(cat /proc/cmdline)
code_before=$(read_fn)

# Nothing applied, livesplice.ko not loaded yet: view says so, undo has nothing to do (3).
livesplice view --kernel | grep -q 'no kernel updates applied' || fail "view before: $(livesplice view --kernel)"
rc=0; livesplice undo --kernel 2>/dev/null || rc=$?
[ $rc = 3 ] || fail "undo with nothing applied: exit $rc, expected 3"

# Without --core, and livesplice.ko not loaded: a clear error (1), nothing loaded.
rc=0; out=$(livesplice apply --kernel /updates/cmdline.lsu 2>&1) || rc=$?
[ $rc = 1 ] || fail "apply without the core: exit $rc: $out"
echo "$out" | grep -q -- '--core' || fail "apply without the core: $out"
[ -c /dev/livesplice ] && fail "the core was loaded anyway"

# An update for another release: refused (2) before anything is looked at.
rc=0; out=$(livesplice apply --kernel /updates/cmdline-release.lsu --core /modules/livesplice.ko 2>&1) || rc=$?
[ $rc = 2 ] || fail "other release: exit $rc, expected 2: $out"
echo "$out" | grep -qF "is for kernel $(cat /updates/cmdline-release.for), this one is $(uname -r)" || fail "other release: $out"
[ -c /dev/livesplice ] && fail "other release: the core was loaded"
echo "ok: an update for another release is refused"

# The update from other source: refused by matching (2), naming the function and the
# difference; the core gets loaded, but the kernel's code and output do not change.
rc=0; out=$(livesplice apply --kernel /updates/cmdline-other.lsu --core /modules/livesplice.ko 2>&1) || rc=$?
echo "   $out" | head -5
[ $rc = 2 ] || fail "other source: exit $rc, expected 2"
echo "$out" | grep -q 'cmdline_proc_show' || fail "other source: the function is not named"
echo "$out" | grep -q 'nothing changed' || fail "other source: $out"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "other source: /proc/cmdline changed"
[ "$(read_fn)" = "$code_before" ] || fail "other source: the code changed"
livesplice view --kernel | grep -q 'no kernel updates applied' || fail "other source: view: $(livesplice view --kernel)"
rc=0; out=$(livesplice apply --kernel /updates/cmdline-other.lsu --json 2>/dev/null) || rc=$?
[ $rc = 2 ] && echo "$out" | grep -q '"applied": false' || fail "other source --json: exit $rc: $out"
echo "ok: an update from other source is refused by run-pre matching, nothing changed"

# Apply: /proc/cmdline carries the patch's text; the jump sits after the fentry NOP.
out=$(livesplice apply --kernel /updates/cmdline.lsu --json) || fail "apply: $out"
echo "$out" | grep -q '"applied": true' || fail "apply --json: $out"
pause=$(echo "$out" | sed -n 's/.*"pause_ns": \([0-9]*\).*/\1/p')
[ -n "$pause" ] && [ "$pause" -gt 0 ] || fail "no pause reported: $out"
echo "   applied, pause ${pause} ns"
now=$(cat /proc/cmdline)
[ "$now" = "$before livesplice=cmdline" ] || fail "/proc/cmdline after apply: '$now'"
case $(read_fn) in 0f1f440000e9*) ;; *) fail "no jmp after the fentry NOP: $(read_fn)";; esac
echo "ok: /proc/cmdline is '$now'"
# The new code is a module of its own, named after the update, pinned while it runs.
mod=$(modules)
[ -n "$mod" ] && [ "$(echo "$mod" | wc -l)" = 1 ] || fail "no update module in /proc/modules: $(cat /proc/modules)"
awk -v m="[$mod]" '$3 == "cmdline_proc_show" && $4 == m' /proc/kallsyms | grep -q . ||
  fail "kallsyms has no cmdline_proc_show in $mod"
if rmmod "$mod" 2>/dev/null; then fail "$mod unloaded while the update is applied"; fi
echo "ok: the new code is module $mod"

# view lists it, by id and function; applying it again is refused.
view=$(livesplice view --kernel) || fail "view"
echo "$view" | sed 's/^/   /'
echo "$view" | grep -q '^  cmdline_proc_show$' || fail "view does not list cmdline_proc_show"
livesplice view --kernel --json | grep -q '"cmdline_proc_show"' || fail "view --json"
rc=0; livesplice apply --kernel /updates/cmdline.lsu >/dev/null 2>&1 || rc=$?
[ $rc = 1 ] || fail "applied twice: exit $rc"
# The core holds the set; it cannot be unloaded under it.
if rmmod livesplice 2>/dev/null; then fail "livesplice unloaded while an update is applied"; fi

# undo (the newest, no id given): output and code as before.
livesplice undo --kernel || fail "undo"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "/proc/cmdline after undo: '$(cat /proc/cmdline)'"
[ "$(read_fn)" = "$code_before" ] || fail "code not restored"
livesplice view --kernel | grep -q 'no kernel updates applied' || fail "view after undo"
[ -z "$(modules)" ] || fail "undo left the module loaded: $(modules)"
echo "ok: undo restored /proc/cmdline and the code, and unloaded $mod"

# meminfo_proc_show carries alternatives (static_cpu_has): the kernel's
# apply_alternatives patches the loaded copy before it is made executable.
grep -q '^Livesplice:' /proc/meminfo && fail "/proc/meminfo has the line before apply"
livesplice apply --kernel /updates/meminfo.lsu || fail "apply meminfo"
grep -q '^Livesplice: *1$' /proc/meminfo || fail "/proc/meminfo after apply: no Livesplice line"
grep -q '^MemTotal:' /proc/meminfo || fail "/proc/meminfo after apply: no MemTotal"
echo "ok: /proc/meminfo has '$(grep ^Livesplice: /proc/meminfo)'"

# Two updates applied: view lists both, newest first; undo without id takes the newest.
livesplice apply --kernel /updates/cmdline.lsu >/dev/null || fail "apply cmdline over meminfo"
livesplice view --kernel | grep -v '^ ' | wc -l | grep -q '^2$' || fail "view of two: $(livesplice view --kernel)"
livesplice view --kernel | sed -n 2p | grep -q cmdline_proc_show || fail "newest first: $(livesplice view --kernel)"
livesplice undo --kernel || fail "undo the newest"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "undo took the wrong one: /proc/cmdline '$(cat /proc/cmdline)'"
grep -q '^Livesplice: *1$' /proc/meminfo || fail "undo took the wrong one: meminfo"
livesplice undo --kernel || fail "undo meminfo"
grep -q '^Livesplice:' /proc/meminfo && fail "/proc/meminfo after undo still has the line"
echo "ok: two updates, undone newest first"

# A new function and a new global (tests/kcreate's new-function-and-global.patch): the
# counter lives in the update's writable data, starts at zero and keeps counting. It
# was made from the original source: while the cmdline update replaces the function,
# what runs is that update's code, and matching refuses it (exit 2, nothing changed).
livesplice apply --kernel /updates/cmdline.lsu >/dev/null || fail "apply cmdline under new-function"
rc=0; out=$(livesplice apply --kernel /updates/new-function-and-global.lsu 2>&1) || rc=$?
[ $rc = 2 ] || fail "new-function over cmdline: exit $rc, expected 2: $out"
echo "$out" | grep -q 'run-pre matching failed' || fail "new-function over cmdline: $out"
[ "$(cat /proc/cmdline)" = "$before livesplice=cmdline" ] || fail "refused stack changed /proc/cmdline"
livesplice undo --kernel || fail "undo cmdline under new-function"
echo "ok: an update of the original code is refused where another update's code runs"
livesplice apply --kernel /updates/new-function-and-global.lsu || fail "apply new-function-and-global"
[ "$(cat /proc/cmdline)" = "$before reads=1" ] || fail "new global, first read: '$(cat /proc/cmdline)'"
[ "$(cat /proc/cmdline)" = "$before reads=2" ] || fail "new global, second read: '$(cat /proc/cmdline)'"
livesplice undo --kernel || fail "undo new-function-and-global"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "after undo of the new function: '$(cat /proc/cmdline)'"
echo "ok: a new function and a new global, counting in the update's data"

# The real Debian fix between 6.1.192-1 and -2 (fs/ext4/mballoc.c), in the ext4 module.
# Before ext4 is loaded it is pending: a waiting process applies it when ext4 loads,
# before ext4's code runs. First as if made from other source (ext4-other.lsu): its
# matching fails as ext4 loads, so ext4's load fails, the reason in the kernel log.
u=/updates/ext4-mballoc-6.1.192-2.lsu
grep -q '^ext4 ' /proc/modules && fail "ext4 is loaded before the test"
out=$(livesplice apply --kernel /updates/ext4-other.lsu) || fail "ext4-other pending: $out"
echo "   $out"
echo "$out" | grep -q 'module ext4 is not loaded' || fail "ext4-other pending: $out"
livesplice view --kernel | grep -q 'pending until module ext4 loads (waiting' || fail "view of ext4-other: $(livesplice view --kernel)"
# (busybox's modprobe tries init_module after a failed finit_module: that fails too.)
if modprobe ext4 2>/dev/null; then fail "ext4 loaded although its pending update failed"; fi
grep -q '^ext4 ' /proc/modules && fail "ext4 is in /proc/modules after its failed load"
dmesg | grep -q 'livesplice: module ext4 not loaded: pending update [0-9a-f]* was not applied: run-pre matching failed.*ext4_mb_init_group' ||
  fail "no reason for ext4's failed load in the kernel log: $(dmesg | grep livesplice: | tail -3)"
grep -q '^livesplice_' /proc/modules && fail "ext4-other's module left loaded: $(grep ^livesplice_ /proc/modules)"
echo "ok: $(dmesg | grep -o 'module ext4 not loaded: pending update [0-9a-f]* was not applied' | tail -1)"
# The failed update stays, and ext4 stays out, until undo cancels it.
view=$(livesplice view --kernel)
echo "$view" | grep -q 'failed: run-pre matching failed' || fail "view of the failed pending update: $view"
if modprobe ext4 2>/dev/null; then fail "ext4 loaded again although its pending update failed"; fi
grep -q '^ext4 ' /proc/modules && fail "ext4 loaded on the second attempt"
out=$(livesplice undo --kernel) || fail "cancel the failed update: $out"
echo "$out" | grep -q '^cancelled ' || fail "cancel the failed update: $out"
livesplice view --kernel | grep -q pending && fail "still pending after cancel: $(livesplice view --kernel)"
echo "ok: the failed update keeps ext4 out until cancelled"

# The real one, pending (--json); undo of a pending update cancels it, its waiter exits.
out=$(livesplice apply --kernel $u --json) || fail "ext4 pending: $out"
echo "$out" | grep -q '"pending": true' || fail "ext4 pending --json: $out"
id=$(echo "$out" | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
waiter=$(echo "$out" | sed -n 's/.*"waiter_pid": \([0-9]*\).*/\1/p')
[ -n "$id" ] && [ -n "$waiter" ] && kill -0 "$waiter" || fail "ext4 pending: no id or waiter: $out"
livesplice view --kernel --json | grep -q '"waits_for": "ext4"' || fail "view --json: $(livesplice view --kernel --json)"
out=$(livesplice undo --kernel "${id%????????}") || fail "undo of a pending update: $out"
echo "$out" | grep -q "^cancelled $(echo "$id" | cut -c1-8): it was pending until module ext4 loads" || fail "undo of a pending update: $out"
i=0; while kill -0 "$waiter" 2>/dev/null && [ $i -lt 20 ]; do sleep 1; i=$((i + 1)); done
kill -0 "$waiter" 2>/dev/null && fail "the waiter of a cancelled update is still there"
livesplice view --kernel | grep -q pending && fail "pending after undo: $(livesplice view --kernel)"
echo "ok: a pending update cancelled by undo, its waiter gone"

# A waiter killed (SIGKILL cannot be ignored): ext4's load fails, naming the update.
out=$(livesplice apply --kernel $u --json) || fail "ext4 pending for the kill: $out"
waiter=$(echo "$out" | sed -n 's/.*"waiter_pid": \([0-9]*\).*/\1/p')
kill -KILL "$waiter"; sleep 1
livesplice view --kernel | grep -q 'no waiter (it exited)' || fail "view after the waiter was killed: $(livesplice view --kernel)"
if modprobe ext4 2>/dev/null; then fail "ext4 loaded although no process waits to apply its update"; fi
dmesg | grep -q "livesplice: module ext4 not loaded: pending update $id was not applied: no process waits to apply it" ||
  fail "no reason for the load without a waiter: $(dmesg | grep livesplice: | tail -2)"
livesplice undo --kernel "$id" >/dev/null || fail "cancel after the waiter was killed"
echo "ok: with its waiter killed, ext4's load fails naming the update"

# A waiter that does not apply the update in time (stopped: SIGSTOP cannot be ignored):
# the load fails after coming_timeout; continued, the late waiter fails (ext4 is gone by
# then, so it never asks the core to apply) and leaves nothing behind.
out=$(livesplice apply --kernel $u --json) || fail "ext4 pending for the timeout: $out"
waiter=$(echo "$out" | sed -n 's/.*"waiter_pid": \([0-9]*\).*/\1/p')
echo 2 > /sys/module/livesplice/parameters/coming_timeout
kill -STOP "$waiter"
if modprobe ext4 2>/dev/null; then fail "ext4 loaded although its update was not applied in time"; fi
dmesg | grep -q "livesplice: module ext4 not loaded: pending update $id was not applied: not applied within 2 s" ||
  fail "no timeout in the kernel log: $(dmesg | grep livesplice: | tail -2)"
kill -CONT "$waiter"
i=0; while kill -0 "$waiter" 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
kill -0 "$waiter" 2>/dev/null && fail "the late waiter did not exit"
grep -q '^ext4 ' /proc/modules && fail "ext4 loaded by the late waiter"
grep -q '^livesplice_' /proc/modules && fail "the late waiter left its module: $(grep ^livesplice_ /proc/modules)"
livesplice view --kernel | grep -q 'failed: not applied within 2 s' || fail "view after the timeout: $(livesplice view --kernel)"
livesplice undo --kernel "$id" >/dev/null || fail "cancel after the timeout"
echo 30 > /sys/module/livesplice/parameters/coming_timeout
echo "ok: a waiter too late: ext4's load fails after coming_timeout, the late waiter changes nothing"

# Pending again: the core cannot go, the waiter ignores SIGTERM and SIGHUP; modprobe
# ext4 applies it before ext4's init runs, and ext4 is updated from its first call.
out=$(livesplice apply --kernel $u) || fail "ext4 pending again: $out"
echo "   $out"
waiter=$(livesplice view --kernel --json | sed -n 's/.*"waiter_pid": \([0-9]*\).*/\1/p')
if rmmod livesplice 2>/dev/null; then fail "livesplice unloaded with an update pending"; fi
kill -TERM "$waiter"; kill -HUP "$waiter"; sleep 1
kill -0 "$waiter" || fail "the waiter died of SIGTERM or SIGHUP"
modprobe ext4 || fail "modprobe ext4 with the update pending: $(dmesg | grep livesplice: | tail -3)"
dmesg | grep -q "livesplice: pending update $id applied to module ext4 before its init" ||
  fail "no apply at ext4's load: $(dmesg | grep livesplice: | tail -3)"
case $(ktool read ext4:ext4_mb_load_buddy_gfp 10) in 0f1f440000e9*) ;; *) fail "ext4_mb_load_buddy_gfp not redirected at load";; esac
view=$(livesplice view --kernel)
echo "$view" | grep -q 'ext4_mb_init_group \[ext4\]' || fail "view after ext4 loaded: $view"
echo "$view" | grep -q pending && fail "still pending after ext4 loaded: $view"
if rmmod ext4 2>/dev/null; then fail "ext4 unloaded under the update applied at its load"; fi
mount -t ext4 /dev/vda /mnt || fail "mount with the update applied at load"
i=0; while [ $i -lt 40 ]; do
  dd if=/dev/urandom of=/mnt/p$i bs=4k count=$((i % 5 + 1)) 2>/dev/null || fail "write /mnt/p$i"
  i=$((i + 1))
done
md5sum /mnt/p* > /tmp/psums
sync; umount /mnt && echo 3 > /proc/sys/vm/drop_caches && mount -t ext4 /dev/vda /mnt || fail "remount"
md5sum -c /tmp/psums >/dev/null || fail "files written under the update applied at load differ after a remount"
umount /mnt || fail "umount"
livesplice undo --kernel || fail "undo ext4 applied at load"
rmmod ext4 || fail "rmmod ext4 after undo"
echo "ok: ext4's fix pending, applied as ext4 loaded; 40 files check out after a remount; undone, ext4 unloads"

# Its new code has WARN entries (__bug_table, registered by the core) and static calls.
# Applied while a file system on the virtio disk is being written; the files check out.
modprobe ext4 || fail "modprobe ext4"
mount -t ext4 /dev/vda /mnt || fail "mount"
writer() {
  i=0
  while [ ! -e /tmp/stop ] && [ $i -lt 2000 ]; do
    dd if=/dev/urandom of=/mnt/f$i bs=4k count=$((i % 7 + 1)) 2>/dev/null || exit 1
    md5sum /mnt/f$i >> /tmp/sums || exit 1
    i=$((i + 1))
  done
}
writer & wpid=$!
sleep 1
out=$(livesplice apply --kernel $u) || fail "apply ext4: $out"
echo "   $out" | head -3
n_at_apply=$(wc -l < /tmp/sums)
case $(ktool read ext4:ext4_mb_load_buddy_gfp 10) in 0f1f440000e9*) ;; *) fail "ext4_mb_load_buddy_gfp not redirected";; esac
livesplice view --kernel | grep -q 'ext4_mb_init_group \[ext4\]' || fail "view: $(livesplice view --kernel)"
if rmmod ext4 2>/dev/null; then fail "ext4 unloaded under the update"; fi
sleep 2; touch /tmp/stop; wait $wpid || fail "the writer failed"
n=$(wc -l < /tmp/sums)
[ "$n_at_apply" -gt 0 ] && [ "$n" -gt "$n_at_apply" ] || fail "not written across the apply: $n_at_apply, then $n files"
sync; echo 3 > /proc/sys/vm/drop_caches
umount /mnt && mount -t ext4 /dev/vda /mnt || fail "remount with the update applied"
md5sum -c /tmp/sums >/dev/null || fail "files differ after the remount"
echo "ok: ext4 fix applied while writing ($n_at_apply files before, $n after); they check out after a remount"
livesplice undo --kernel || fail "undo ext4"
md5sum -c /tmp/sums >/dev/null || fail "files differ after undo"
umount /mnt || fail "umount"
rmmod ext4 || fail "rmmod ext4 after undo"
echo "ok: ext4 undone, the module unloads"

# A WARN in the new code (cmdline-warn: WARN_ON at fs/proc/cmdline.c:9) is reported with
# its file and line from the bug table the core registered, and the read goes on; without
# the entry it would be an invalid opcode, an oops (and with oops=panic, the end).
livesplice apply --kernel /updates/cmdline-warn.lsu >/dev/null || fail "apply cmdline-warn"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "cmdline-warn output: '$(cat /proc/cmdline)'"
dmesg | grep -q 'WARNING: .* at fs/proc/cmdline.c:9 ' || fail "no WARNING at fs/proc/cmdline.c:9: $(dmesg | tail -5)"
# Its report names the update's module: the kernel knows the new code as a module's.
dmesg | grep -q 'RIP: 0010:cmdline_proc_show+0x[0-9a-f]*/0x[0-9a-f]* \[livesplice_[0-9a-f]*\]' ||
  fail "the WARN's RIP does not name the update's module: $(dmesg | grep 'RIP:' | tail -2)"
livesplice undo --kernel || fail "undo cmdline-warn"
echo "ok: a WARN in the new code reported as $(dmesg | grep -o 'WARNING: .* at fs/proc/cmdline.c:9' | head -1)"
echo "   $(dmesg | grep -o 'RIP: 0010:cmdline_proc_show.*' | head -1)"

# A syscall path (newuname, uname-put-user.patch): `uname -v` gains " livesplice", and the
# new code's inline __put_user faults on a bad pointer; the exception table of the
# update's module (registered and sorted by the kernel's loader) turns that into EFAULT.
# Without the entry it is an oops, and with oops=panic the end of the guest.
chmod +x /bin/uname-efault
uname -v | grep -q ' livesplice$' && fail "uname -v before apply: $(uname -v)"
uname-efault || fail "uname with a bad pointer before apply"
livesplice apply --kernel /updates/uname-put-user.lsu >/dev/null || fail "apply uname-put-user"
uname -v | grep -q ' livesplice$' || fail "uname -v after apply: $(uname -v)"
out=$(uname-efault) || fail "uname with a bad pointer after apply: $out"
uname -a >/dev/null || fail "uname -a after the fault"
livesplice undo --kernel || fail "undo uname-put-user"
uname -v | grep -q ' livesplice$' && fail "uname -v after undo: $(uname -v)"
echo "ok: newuname's new code faults on a bad pointer and returns EFAULT ($out)"

# A jump label in the new code (cmdline-jump-label.patch: static_branch_unlikely on the
# kernel's sched_schedstats key): the kernel's loader registers the module's __jump_table
# under the key, so switching the key switches the new code too.
livesplice apply --kernel /updates/cmdline-jump-label.lsu >/dev/null || fail "apply cmdline-jump-label"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "jump label, key off: '$(cat /proc/cmdline)'"
echo 1 > /proc/sys/kernel/sched_schedstats || fail "sched_schedstats on"
[ "$(cat /proc/cmdline)" = "$before schedstats" ] || fail "jump label, key on: '$(cat /proc/cmdline)'"
echo 0 > /proc/sys/kernel/sched_schedstats || fail "sched_schedstats off"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "jump label, key off again: '$(cat /proc/cmdline)'"
livesplice undo --kernel || fail "undo cmdline-jump-label"
echo "ok: a jump label in the new code follows its key (sched_schedstats)"

# A static local variable in the new code (cmdline-static-local.patch): it lives in the
# module's data, counts across reads, and starts again with a fresh module.
livesplice apply --kernel /updates/cmdline-static-local.lsu >/dev/null || fail "apply cmdline-static-local"
[ "$(cat /proc/cmdline)" = "$before shown=1" ] || fail "static local, first read: '$(cat /proc/cmdline)'"
[ "$(cat /proc/cmdline)" = "$before shown=2" ] || fail "static local, second read: '$(cat /proc/cmdline)'"
livesplice undo --kernel || fail "undo cmdline-static-local"
livesplice apply --kernel /updates/cmdline-static-local.lsu >/dev/null || fail "apply cmdline-static-local again"
[ "$(cat /proc/cmdline)" = "$before shown=1" ] || fail "static local after re-apply: '$(cat /proc/cmdline)'"
livesplice undo --kernel || fail "undo cmdline-static-local again"
echo "ok: a static local in the new code counts in the module's data"

# Undo unloads the new code: no task may be inside it. cmdline-sleep's cmdline_proc_show
# sleeps 3 s in msleep; while `cat` is in there (unwound with the module's ORC, a
# return address in the module's text), undo is refused naming it, and goes through
# once it has left.
livesplice apply --kernel /updates/cmdline-sleep.lsu >/dev/null || fail "apply cmdline-sleep"
cat /proc/cmdline > /tmp/slept & cpid=$!
sleep 1
rc=0; out=$(livesplice undo --kernel --retries 2 --retry-delay 10 2>&1) || rc=$?
echo "   $out"
[ $rc = 2 ] || fail "undo while a task sleeps in the new code: exit $rc, expected 2"
echo "$out" | grep -q '(cat)' || fail "the sleeping task is not named"
wait $cpid || fail "cat /proc/cmdline"
[ "$(cat /tmp/slept)" = "$before" ] || fail "cmdline-sleep output: '$(cat /tmp/slept)'"
livesplice undo --kernel || fail "undo after the task left"
echo "ok: undo refused while a task sleeps inside the new code, done once it left"

# The whole module goes on undo, not just the replacements: cmdline-nap's
# cmdline_proc_show is a tail call (a bare jmp) to a new function, livesplice_nap, that
# sleeps 3 s. With `cat` asleep there, no frame of it is in the replacement, yet undo is
# refused, naming the new function in the update's module; unloading under it would
# crash the guest.
livesplice apply --kernel /updates/cmdline-nap.lsu >/dev/null || fail "apply cmdline-nap"
cat /proc/cmdline > /tmp/napped & cpid=$!
sleep 1
rc=0; out=$(livesplice undo --kernel --retries 2 --retry-delay 10 2>&1) || rc=$?
echo "   $out"
[ $rc = 2 ] || fail "undo while a task sleeps in a new function of the module: exit $rc, expected 2"
echo "$out" | grep -q 'livesplice_nap+0x[0-9a-f]*/0x[0-9a-f]* \[livesplice_' || fail "the new function is not named"
wait $cpid || fail "cat /proc/cmdline (nap)"
[ "$(cat /tmp/napped)" = "$before" ] || fail "cmdline-nap output: '$(cat /tmp/napped)'"
livesplice undo --kernel || fail "undo cmdline-nap after the task left"
[ -z "$(modules)" ] || fail "cmdline-nap's module left: $(modules)"
echo "ok: undo refused while a task sleeps in a new function of the module, done once it left"

# Again, undone by id prefix; then the core unloads, and no update module is left.
id=$(livesplice apply --kernel /updates/cmdline.lsu --json | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p')
[ -n "$id" ] || fail "apply again"
[ "$(cat /proc/cmdline)" = "$before livesplice=cmdline" ] || fail "second apply"
livesplice undo --kernel "${id%????????}" || fail "undo by id prefix"
[ "$(cat /proc/cmdline)" = "$before" ] || fail "after undo by id"
rmmod livesplice || fail "rmmod livesplice with nothing applied"
[ -z "$(modules)" ] || fail "update modules left: $(modules)"
echo "ok: applied again, undone by id, the core unloads"
