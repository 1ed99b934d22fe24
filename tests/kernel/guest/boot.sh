# The test bed itself: what every other kernel test relies on.
fail() { echo "FAIL: $*"; exit 1; }

# kallsyms lists the whole kernel with real addresses (we are root, kptr_restrict < 2).
n=$(wc -l < /proc/kallsyms)
[ "$n" -gt 50000 ] || fail "/proc/kallsyms has only $n lines"
stext=$(grep ' T _stext$' /proc/kallsyms | cut -d' ' -f1)
[ -n "$stext" ] && [ "$stext" != 0000000000000000 ] || fail "_stext hidden in /proc/kallsyms: '$stext'"
echo "ok: /proc/kallsyms, $n symbols, _stext at $stext"

# kcore is readable, and the code it shows carries the runtime rewrite we rely on: the
# `call __fentry__` at the entry of a traceable function is a 5-byte NOP.
code=$(ktool read cmdline_proc_show 16) || fail "reading cmdline_proc_show from /proc/kcore"
echo "ok: /proc/kcore: cmdline_proc_show = $code"
case $code in 0f1f440000*) ;; *) fail "cmdline_proc_show does not start with the fentry NOP";; esac
[ "$(ktool offset cmdline_proc_show)" = 5 ] || fail "splice offset of cmdline_proc_show is not 5"

# The carried livesplice runs (its shared libraries came along).
livesplice --help >/dev/null || fail "livesplice --help"
echo "ok: livesplice runs"

# Unsigned modules load: ext4 from the -unsigned image package (taint E = 8192), and one
# built out of tree here against the headers package (taint O = 4096).
modprobe ext4 || fail "modprobe ext4"
grep -q '^ext4 ' /proc/modules || fail "ext4 not in /proc/modules"
insmod /modules/ls_test.ko || fail "insmod ls_test.ko"
t=$(cat /proc/sys/kernel/tainted)
[ $((t & 8192)) -ne 0 ] || fail "taint $t: no E (unsigned module)"
[ $((t & 4096)) -ne 0 ] || fail "taint $t: no O (out-of-tree module)"
echo "ok: unsigned modules load (tainted=$t)"

# The virtio disk mounts as ext4 and takes writes (ext4 was loaded above).
[ -b /dev/vda ] || fail "/dev/vda missing (virtio_blk)"
mount -t ext4 /dev/vda /mnt || fail "mount ext4 /dev/vda"
dd if=/dev/urandom of=/mnt/data bs=64k count=64 2>/dev/null || fail "writing to ext4"
sum1=$(md5sum < /mnt/data)
umount /mnt && mount -t ext4 /dev/vda /mnt || fail "remount"
[ "$(md5sum < /mnt/data)" = "$sum1" ] || fail "data changed across a remount"
umount /mnt
echo "ok: ext4 on the virtio disk"
