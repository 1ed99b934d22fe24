# A set of twenty functions switches at one instant, and back; the pause of each apply
# and undo is printed for 1 and for 20 functions (TCG timing: not hardware figures).
fail() { echo "FAIL: $*"; exit 1; }

ktool load-core /modules/livesplice.ko || fail "loading livesplice.ko"
insmod /modules/ls_test.ko || fail "insmod ls_test.ko"
sum=/sys/module/ls_test/parameters/sum
[ "$(cat $sum)" = 190 ] || fail "sum as loaded: $(cat $sum)"

pairs=""
i=0
while [ $i -lt 20 ]; do
  pairs="$pairs ls_test:ls_test_f$i=ls_test:ls_test_g$i"
  i=$((i + 1))
done
ktool apply twenty $pairs || fail "apply twenty"
[ "$(cat $sum)" = 2190 ] || fail "sum after apply: $(cat $sum)"
[ "$(ktool list | grep -c '^twenty ')" = 20 ] || fail "list: $(ktool list)"
ktool undo twenty || fail "undo twenty"
[ "$(cat $sum)" = 190 ] || fail "sum after undo: $(cat $sum)"
echo "ok: twenty functions applied and undone as one"

# Pause figures: five rounds each (the first rounds also pay TCG's code translation).
for n in 1 20; do
  set -- $pairs
  list=""
  i=0
  while [ $i -lt $n ]; do list="$list $1"; shift; i=$((i + 1)); done
  round=0
  while [ $round -lt 5 ]; do
    a=$(ktool apply p$n $list) || fail "apply $n"
    u=$(ktool undo p$n) || fail "undo $n"
    echo "pause functions=$n apply: $a"
    echo "pause functions=$n undo:  $u"
    round=$((round + 1))
  done
done
[ "$(cat $sum)" = 190 ] || fail "sum at the end: $(cat $sum)"
