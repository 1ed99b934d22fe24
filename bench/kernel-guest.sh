# Inside the test bed's guest (bench/kernel.sh), BENCH_ROUNDS rounds after a warm-up:
# - livesplice: `livesplice apply --kernel` and `undo --kernel` of the updates made by
#   `livesplice create --kernel`, with the pause livesplice.ko reports (stop_machine
#   called -> returned; work: the check and writes with every CPU held) and the whole
#   command timed by kbench-clock. One line per round:
#     bench update=NAME functions=N apply_ns= undo_ns= apply_work_ns= undo_work_ns=
#           apply_cmd_ns= undo_cmd_ns=
# - kernel livepatch: the same change of block/blk-sysfs.c (1 and 20 functions) as the
#   livepatch modules of bench/klp, enabled by loading and disabled through sysfs:
#     klp functions=N load_ns= enable_ns= done_at_load= disable_ns= unload_ns= done_at_write=
# Every apply and enable is checked in /sys/block/vda/queue: the changed functions print
# " patched", the others do not, and livepatch's output equals livesplice's.
fail() { echo "FAIL: $*"; exit 1; }
rounds=${BENCH_ROUNDS:-10}
modprobe ext4 || fail "modprobe ext4"
num() { echo "$1" | sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" | head -1; }
field() { echo "$1" | sed -n "s/.*$2=\([0-9]*\).*/\1/p" | head -1; }

# The twenty sysfs files of the blk-sysfs patches' functions, in the patch's order (the
# 1-function patch changes the first).
attrs="nr_requests max_sectors_kb max_segments max_discard_segments max_integrity_segments
  max_segment_size logical_block_size physical_block_size chunk_sectors minimum_io_size
  optimal_io_size discard_granularity discard_max_hw_bytes discard_max_bytes
  discard_zeroes_data write_same_max_bytes write_zeroes_max_bytes max_hw_sectors_kb
  virt_boundary_mask dma_alignment"
queue() { for f in $attrs; do echo "$f: $(cat /sys/block/vda/queue/$f)"; done; }
# expect N: exactly the first N files are marked.
expect() {
  q=$(queue)
  [ "$(echo "$q" | grep -c ' patched$')" = "$1" ] || fail "$2: expected $1 changed files:
$q"
  if [ "$1" != 0 ] && echo "$q" | head -n "$1" | grep -qv ' patched$'; then
    fail "$2: not the first $1 files changed:
$q"
  fi
}
orig=$(queue)
expect 0 "as booted"

t=/tmp/kbench-time
for u in cmdline meminfo ext4-mballoc-6.1.192-2 blk-sysfs-1 blk-sysfs-20; do
  case $u in blk-sysfs-*) marked=${u#blk-sysfs-} ;; *) marked=0 ;; esac
  r=0
  while [ $r -le $rounds ]; do   # round 0 warms up (TCG translates the code once)
    a=$(kbench-clock run livesplice -q apply --kernel /updates/$u.lsu --core /modules/livesplice.ko --json 2>$t) \
      || fail "apply $u: $a $(cat $t)"
    ac=$(field "$(cat $t)" elapsed_ns)
    expect $marked "after applying $u"
    [ $marked = 0 ] || queue > /tmp/livesplice-$marked.out
    d=$(kbench-clock run livesplice -q undo --kernel --json 2>$t) || fail "undo $u: $d $(cat $t)"
    dc=$(field "$(cat $t)" elapsed_ns)
    [ "$(queue)" = "$orig" ] || fail "after undoing $u: $(queue)"
    n=$(echo "$a" | sed -n '/"functions"/,/]/p' | grep -c '"[^"]*\.o:')
    [ $marked = 0 ] || [ $n = $marked ] || fail "$u replaced $n functions"
    [ $r -gt 0 ] && echo "bench update=$u functions=$n apply_ns=$(num "$a" pause_ns) undo_ns=$(num "$d" pause_ns)" \
      "apply_work_ns=$(num "$a" work_ns) undo_work_ns=$(num "$d" work_ns) apply_cmd_ns=$ac undo_cmd_ns=$dc"
    r=$((r + 1))
  done
done

for n in 1 20; do
  r=0
  while [ $r -le $rounds ]; do
    e=$(kbench-clock klp-enable /modules/lsb_klp$n.ko lsb_klp$n) || fail "livepatch lsb_klp$n: $e"
    expect $n "after enabling lsb_klp$n"
    [ "$(queue)" = "$(cat /tmp/livesplice-$n.out)" ] || fail "lsb_klp$n prints otherwise than blk-sysfs-$n.lsu:
$(queue)"
    x=$(kbench-clock klp-disable lsb_klp$n) || fail "disabling lsb_klp$n: $x"
    [ "$(queue)" = "$orig" ] || fail "after disabling lsb_klp$n: $(queue)"
    grep -q '^lsb_klp' /proc/modules && fail "lsb_klp$n still loaded"
    [ $r -gt 0 ] && echo "klp functions=$n $e $x"
    r=$((r + 1))
  done
done
