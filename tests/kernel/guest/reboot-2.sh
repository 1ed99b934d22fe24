# kernel.reboot, second boot of the same guest with the same disk: the stored kernel
# update comes back at boot. The guest's init is busybox, not systemd, so this script
# stands in for the boot from the point livesplice-sync.service is ordered at (after the
# local file systems, before services): it mounts the store's file system and runs the
# unit's own ExecStart command, read from the unit file.
fail() { echo "FAIL: $*"; exit 1; }
up() { cut -d' ' -f1 /proc/uptime; }
. /updates/installed.sh
# systemd mounts /run before any unit; busybox's init does not.
mkdir -p /run && mount -t tmpfs tmpfs /run
label=$(cat /updates/label)
grep -q 'livesplice=cmdline' /proc/cmdline && fail "/proc/cmdline is patched before sync: not a fresh boot?"
[ -e /dev/livesplice ] && fail "livesplice.ko loaded before sync"
mkdir -p /var/lib/livesplice
mount -t ext4 /dev/vda /var/lib/livesplice || fail "mount the store's disk"
# local-fs.target reached. The unit's condition and command:
unit=/etc/systemd/system/livesplice-sync.service
cond=$(sed -n 's/^ConditionPathExists=//p' $unit)
[ -e "$cond" ] || fail "the unit's condition $cond does not hold: the unit would not run"
cmd=$(sed -n 's/^ExecStart=//p' $unit)
[ -n "$cmd" ] || fail "no ExecStart in $unit"
t0=$(up)
rc=0; $cmd > /tmp/sync.out 2>&1 || rc=$?
[ $rc -eq 0 ] || { cat /tmp/sync.out; fail "'$cmd' exit $rc"; }
t1=$(up)
grep -q 'livesplice=cmdline' /proc/cmdline || { cat /tmp/sync.out; fail "/proc/cmdline not patched after '$cmd'"; }
echo "ok: '$cmd' re-applied the stored kernel update: $(cat /proc/cmdline)"
echo "boot to patched: ${t1} s of uptime (the sync itself $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") s; started at ${t0} s)"
livesplice status > /tmp/status.out || fail "status exit $?"
cat /tmp/status.out
grep -qF "effective version $label" /tmp/status.out || fail "status after boot: no effective version $label"

# remove undoes it in the kernel and unloads its module.
id=$(livesplice view --kernel --json | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' | head -1)
[ -n "$id" ] || fail "view --kernel lists no update"
rc=0; livesplice remove --all > /tmp/remove.out 2>&1 || rc=$?
[ $rc -eq 0 ] || { cat /tmp/remove.out; fail "remove exit $rc"; }
cat /tmp/remove.out
grep -q "^undone $(echo "$id" | cut -c1-8).* in the kernel (" /tmp/remove.out || fail "remove: no 'undone ... in the kernel'"
grep -q 'livesplice=cmdline' /proc/cmdline && fail "/proc/cmdline still patched after remove"
grep -q "^livesplice_" /proc/modules && fail "an update's module is still loaded after remove"
livesplice status > /tmp/status.out || fail "status exit $?"
grep -q '^store .*: 0 updates' /tmp/status.out || { cat /tmp/status.out; fail "status: the store is not empty"; }
echo "ok: remove undid it: $(cat /proc/cmdline)"
umount /var/lib/livesplice
