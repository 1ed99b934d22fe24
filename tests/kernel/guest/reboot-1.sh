# kernel.reboot, first boot: the update manager with a kernel update. The store is on the
# shared disk (/dev/vda, ext4, mounted where the store lives); the second boot
# (reboot-2.sh) finds it there. run-boot-test made the updates:
#   /updates/cmdline.lsu          tests/kcreate's cmdline fix, label LABEL (/updates/label)
#   /updates/cmdline-release.lsu  the same, as if made for another kernel release
#   /updates/ext4.lsu             Debian's ext4 fix 6.1.192-1 -> -2 (tests/kcreate)
fail() { echo "FAIL: $*"; exit 1; }
. /updates/installed.sh
# systemd mounts /run before any unit; busybox's init does not.
mkdir -p /run && mount -t tmpfs tmpfs /run     # what a package would have installed: binary, core, unit
label=$(cat /updates/label)

# Before ext4 is loaded (the shared disk is ext4): Debian's ext4 fix installed in a store
# of its own on /tmp is pending in the kernel until ext4 loads. Its waiting process must
# not hold the store's lock (else every later command of that store would wait for ext4).
grep -q '^ext4 ' /proc/modules && fail "ext4 is loaded before the test"
rc=0; livesplice install --root /tmp/s /updates/ext4.lsu > /tmp/pend.out 2>&1 || rc=$?
cat /tmp/pend.out
[ $rc -eq 0 ] || fail "install of the ext4 fix: exit $rc"
grep -q '^pending .* in the kernel (.*) until module ext4 loads' /tmp/pend.out || fail "install: not pending for ext4"
rc=0; timeout 60 livesplice status --root /tmp/s > /tmp/pend.out 2>&1 || rc=$?
cat /tmp/pend.out
[ $rc -eq 0 ] || fail "status while the ext4 fix is pending: exit $rc (124 or 143: timeout ended it, it waited for the store's lock)"
grep -q '^  not applied in the kernel (.*): pending until module ext4 loads' /tmp/pend.out || fail "status: not pending"
modprobe ext4 || fail "modprobe ext4 with its fix pending"
livesplice status --root /tmp/s > /tmp/pend.out || fail "status after modprobe ext4"
grep -q '^  applied in the kernel (' /tmp/pend.out || { cat /tmp/pend.out; fail "the ext4 fix not applied as ext4 loaded"; }
rc=0; livesplice remove --root /tmp/s --all > /tmp/pend.out 2>&1 || rc=$?
cat /tmp/pend.out
[ $rc -eq 0 ] || fail "remove of the ext4 fix: exit $rc"
grep -q "^livesplice_" /proc/modules && fail "the ext4 fix's module is still loaded after remove"
echo "ok: the ext4 fix was pending, applied as ext4 loaded, and removed"

mkdir -p /var/lib/livesplice
mount -t ext4 /dev/vda /var/lib/livesplice || fail "mount the store's disk"

grep -q 'livesplice=cmdline' /proc/cmdline && fail "/proc/cmdline is patched before install"
# install applies the kernel update to the running kernel (livesplice.ko loaded from its
# installed place: no --core); the one for another release is stored, not applied, and
# that is no failure.
rc=0; livesplice install /updates/cmdline.lsu /updates/cmdline-release.lsu > /tmp/install.out 2>&1 || rc=$?
[ $rc -eq 0 ] || { cat /tmp/install.out; fail "install exit $rc"; }
cat /tmp/install.out
grep -q '^applied .* to the kernel (' /tmp/install.out || fail "install: no 'applied ... to the kernel' line"
grep -q '^kernel update .* is not for this kernel: made for kernel ' /tmp/install.out ||
  fail "install: the other release's update not reported as not for this kernel"
grep -q 'livesplice=cmdline' /proc/cmdline || fail "/proc/cmdline not patched after install"
echo "ok: install applied the kernel update: $(cat /proc/cmdline)"

# status: applied in the kernel, the other one not for it, the effective version.
livesplice status > /tmp/status.out || fail "status exit $?"
cat /tmp/status.out
grep -q '^  applied in the kernel (' /tmp/status.out || fail "status: not 'applied in the kernel'"
grep -q '^  not for this kernel: made for kernel ' /tmp/status.out || fail "status: other release not said"
grep -qF "effective version $label" /tmp/status.out || fail "status: no effective version $label"
livesplice status --json > /tmp/status.json || fail "status --json"
grep -q "\"effective_version\": \"$label\"" /tmp/status.json || fail "status --json: kernel effective version"

# Idempotent: a second sync finds it applied.
rc=0; livesplice sync > /tmp/sync.out 2>&1 || rc=$?
[ $rc -eq 0 ] || { cat /tmp/sync.out; fail "sync exit $rc"; }
grep -q '^already applied .* to the kernel (' /tmp/sync.out || { cat /tmp/sync.out; fail "sync: not 'already applied'"; }
echo "ok: sync again: $(grep '^already' /tmp/sync.out)"
ls /var/lib/livesplice/updates
umount /var/lib/livesplice || fail "umount the store"
echo "ok: first boot done, store on the disk"
