# Inside the test bed's guest (bench/kernel.sh): the pause of `livesplice apply --kernel`
# and `livesplice undo --kernel` for updates made by `livesplice create --kernel`, as
# livesplice.ko reports it (stop_machine called -> returned). One line per round:
#   bench update=NAME functions=N apply_ns=P undo_ns=Q apply_work_ns=W undo_work_ns=V
fail() { echo "FAIL: $*"; exit 1; }
rounds=${BENCH_ROUNDS:-10}
modprobe ext4 || fail "modprobe ext4"
num() { echo "$1" | sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" | head -1; }
for u in cmdline meminfo ext4-mballoc-6.1.192-2; do
  r=0
  while [ $r -le $rounds ]; do   # round 0 warms up (TCG translates the code once)
    a=$(livesplice -q apply --kernel /updates/$u.lsu --core /modules/livesplice.ko --json) || fail "apply $u: $a"
    d=$(livesplice -q undo --kernel --json) || fail "undo $u: $d"
    n=$(echo "$a" | sed -n '/"functions"/,/]/p' | grep -c '"[^"]*\.o:')
    [ $r -gt 0 ] && echo "bench update=$u functions=$n apply_ns=$(num "$a" pause_ns) undo_ns=$(num "$d" pause_ns)" \
      "apply_work_ns=$(num "$a" work_ns) undo_work_ns=$(num "$d" work_ns)"
    r=$((r + 1))
  done
done
