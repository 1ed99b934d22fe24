# Run-pre matching of updates made by `livesplice create --kernel` against the running
# kernel (/proc/kcore, candidates from /proc/kallsyms), through ktool match.
fail() { echo "FAIL: $*"; exit 1; }
addr() { awk -v n="$1" '$3 == n && ($2 == "t" || $2 == "T") { print $1; exit }' /proc/kallsyms; }

# Each replaced function matches where kallsyms has it, although the kernel rewrote its
# code at boot (fentry NOP, `ret; int3` for the return thunk, static_cpu_has).
match_at() {  # UPDATE LABEL FUNCTION
  out=$(ktool match "/updates/$1.lsu" 2>&1) || fail "$1 did not match: $out"
  echo "$out" | grep -q "^$2 at 0x$(addr "$3")\$" || fail "$1: $2 not matched at $3 ($(addr "$3")): $out"
  echo "ok: $1: $2 matched at $(addr "$3")"
}
match_at cmdline cmdline.o:cmdline_proc_show cmdline_proc_show
match_at meminfo meminfo.o:meminfo_proc_show meminfo_proc_show
modprobe ext4 || fail "modprobe ext4"
match_at ext4-mballoc-6.1.192-2 mballoc.o:ext4_mb_init_group ext4_mb_init_group

# Without the kernel's table the same code is refused (exit 2) at the first rewrite: the
# table is what makes it match, not a lax comparison.
rc=0; out=$(ktool match /updates/cmdline.lsu --plain 2>&1) || rc=$?
[ $rc = 2 ] || fail "match --plain: exit $rc, expected 2: $out"
echo "$out" | grep -q "call __fentry__" || fail "match --plain refused for another reason: $out"
echo "ok: refused without the rewrite table: $out"

# Alternatives and jump labels, whose sites are no relocations: the update carries pre's
# .altinstructions and __jump_table entries for __rseq_handle_notify_resume
# (rseq-update.patch). Its pre code has user_write_access_begin/end, whose `stac`/`clac`
# alternatives the kernel applied at boot (qemu -cpu max has SMAP), and the jump labels
# of the rseq tracepoints, flipped here by enabling the events.
grep -qw smap /proc/cpuinfo || fail "the guest CPU has no SMAP: the stac/clac alternatives are not applied"
fn=__rseq_handle_notify_resume
match_at rseq-update rseq.o:$fn $fn
# Before the tables were carried, the same update was refused at the first alternative.
rc=0; out=$(ktool match /updates/rseq-update.lsu --no-tables 2>&1) || rc=$?
[ $rc = 2 ] || fail "match --no-tables: exit $rc, expected 2: $out"
echo "ok: refused without the alternatives of the update's tables: $out"
events=/sys/kernel/debug/tracing/events/rseq
[ -d $events ] || mount -t tracefs nodev /sys/kernel/debug/tracing 2>/dev/null
[ -d $events ] || fail "no rseq trace events"
before=$(ktool read $fn 1152) || fail "read $fn"
echo 1 > $events/rseq_update/enable || fail "enable rseq_update"
echo 1 > $events/rseq_ip_fixup/enable || fail "enable rseq_ip_fixup"
after=$(ktool read $fn 1152) || fail "read $fn"
[ "$before" != "$after" ] || fail "enabling the rseq events changed no byte of $fn"
match_at rseq-update rseq.o:$fn $fn
echo "ok: matches with its jump labels flipped"
# And applies (the core's jump at the function, the kernel's tables for the new code),
# with the events on; rseq users (busybox's libc) keep running through the new code.
out=$(livesplice apply --kernel /updates/rseq-update.lsu --core /modules/livesplice.ko 2>&1) || fail "apply: $out"
ls / >/dev/null || fail "ls after apply"
livesplice undo --kernel || fail "undo"
echo 0 > $events/rseq_update/enable
echo 0 > $events/rseq_ip_fixup/enable
rmmod livesplice || fail "rmmod livesplice"
echo "ok: rseq-update applied with its events on, undone"
