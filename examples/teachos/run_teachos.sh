#!/bin/sh
# run_teachos.sh: runs one user program under teachos for suite `teachos`.
#
#   run_teachos.sh MODE TEACHOS [TEACHOS OPTIONS...] PROG [ARGS...]
#     MODE=oracle:EXPECTED  stdout must equal EXPECTED byte for byte and teachos exit 0
#     MODE=exit0            teachos must exit 0 (init exited 0 and every frame came back)
#     MODE=status:N         teachos must exit with status N (e.g. 127: init could not start)
#     MODE=replay           two runs with --deterministic 42 --trace sched,syscalls must print
#                           identical stdout and identical traces
# Exit status: 0 pass, 1 fail.
set -u
mode=$1
teachos=$2
shift 2
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err" "$out.2" "$err.2"' EXIT

case $mode in
  replay)
    "$teachos" --deterministic 42 --trace sched,syscalls "$@" >"$out" 2>"$err"
    s1=$?
    "$teachos" --deterministic 42 --trace sched,syscalls "$@" >"$out.2" 2>"$err.2"
    s2=$?
    if [ $s1 -ne $s2 ] || ! cmp -s "$out" "$out.2"; then
      echo "FAIL: stdout or status differ between two runs with the same seed ($s1, $s2)"
      diff "$out" "$out.2" | head -20
      exit 1
    fi
    # The traces must agree line for line. Not compared: the statistics (TLB hits depend on
    # when RCU grace periods end, which is host time) and what teachos_freemem and
    # teachos_vtop answer (which frames are free depends on those grace periods too).
    grep -E '^(sched|syscall):' "$err" | grep -vE 'teachos_(freemem|vtop)' >"$err.t1"
    grep -E '^(sched|syscall):' "$err.2" | grep -vE 'teachos_(freemem|vtop)' >"$err.t2"
    if ! cmp -s "$err.t1" "$err.t2"; then
      echo "FAIL: traces differ between two runs with the same seed"
      diff "$err.t1" "$err.t2" | head -20
      rm -f "$err.t1" "$err.t2"
      exit 1
    fi
    echo "replayed: $(wc -l <"$err.t1") trace lines identical"
    rm -f "$err.t1" "$err.t2"
    exit 0
    ;;
esac

"$teachos" "$@" >"$out" 2>"$err"
status=$?
cat "$err" >&2
case $mode in
  status:*)
    if [ $status -ne "${mode#status:}" ]; then
      echo "FAIL: teachos exited $status, expected ${mode#status:}"
      exit 1
    fi
    echo "PASS"
    exit 0
    ;;
esac
if [ $status -ne 0 ]; then
  echo "FAIL: teachos exited $status"
  cat "$out"
  exit 1
fi
case $mode in
  oracle:*)
    expected=${mode#oracle:}
    if ! cmp -s "$out" "$expected"; then
      echo "FAIL: stdout differs from $expected"
      diff "$expected" "$out" | head -40
      exit 1
    fi
    ;;
esac
echo "PASS"
exit 0
