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
