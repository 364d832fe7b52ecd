#!/bin/sh
# run_oracle.sh: runs one teachos user program under qemu-riscv64, the outside oracle.
#
#   run_oracle.sh MODE PROGDIR PROG [ARGS...]
#     MODE=oracle:EXPECTED  stdout must equal the file EXPECTED byte for byte, exit status 0
#     MODE=smoke            (teachos-only programs) only the exit status must be 0: the program
#                           runs everything that does not need teachos and skips the rest
#
# Programs that execve other programs (exectest, usertests) need the host kernel to run a
# RISC-V ELF: the script registers qemu-riscv64 with binfmt_misc inside a private user+mount
# namespace (Linux >= 6.7 gives each user namespace its own binfmt_misc), which changes
# nothing outside this run. Where that is not possible, such programs exit 77 (skip) by
# themselves when execve answers ENOEXEC.
# Exit status: 0 pass, 1 fail, 77 skip (with the reason printed).
set -u
mode=$1
progdir=$2
prog=$3
shift 3

QEMU=${QEMU:-qemu-riscv64}
if ! command -v "$QEMU" >/dev/null 2>&1; then
  echo "SKIP: $QEMU not found (Debian: apt-get install qemu-user)"
  exit 77
fi
if [ ! -x "$progdir/$prog" ]; then
  echo "FAIL: $progdir/$prog was not built"
  exit 1
fi

out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
cd "$progdir" || exit 1
# qemu-user writes a core file for a guest killed by a signal; the tests kill children on
# purpose, so no cores.
ulimit -c 0

# The binfmt interpreter: qemu started as "*-binfmt-P" takes the preserved argv[0] (flag P).
interp=$(dirname "$(command -v "$QEMU")")/../libexec/qemu-binfmt/riscv64-binfmt-P
[ -e "$interp" ] || interp=$(command -v "$QEMU")
magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00'
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
flags=F
case "$interp" in *-binfmt-P) flags=PF ;; esac

run_plain() { "$QEMU" "./$prog" "$@" >"$out" 2>"$err" </dev/null; }
# In a fresh user+mount namespace: mount a private binfmt_misc, register qemu, run "$@".
binfmt_sh='mount -t binfmt_misc none /proc/sys/fs/binfmt_misc 2>/dev/null || exit 125
  printf ":teachos-rv64:M::%s:%s:%s:%s" "$1" "$2" "$3" "$4" \
    > /proc/sys/fs/binfmt_misc/register 2>/dev/null || exit 125
  shift 4
  exec "$@"'
run_binfmt() {
  unshare --user --map-root-user --mount sh -c "$binfmt_sh" sh "$magic" "$mask" "$interp" \
    "$flags" "$QEMU" "./$prog" "$@" >"$out" 2>"$err" </dev/null
}

# Probe once whether this host allows the private registration (unshare may be missing or
# user namespaces disabled); the program's own exit status is never mistaken for the probe's.
if command -v unshare >/dev/null 2>&1 &&
   unshare --user --map-root-user --mount sh -c "$binfmt_sh" sh "$magic" "$mask" "$interp" \
     "$flags" true >/dev/null 2>&1; then
  run_binfmt "$@"
  status=$?
else
  echo "note: no private binfmt_misc here; programs cannot execve other RISC-V programs"
  run_plain "$@"
  status=$?
fi

echo "--- stdout of $prog $*"
cat "$out"
echo "--- stderr"
cat "$err"
echo "--- exit status $status"

if [ $status -eq 77 ]; then
  echo "SKIP: $prog skipped itself (see its stderr above)"
  exit 77
fi
if [ $status -ne 0 ]; then
  echo "FAIL: $prog exited with status $status"
  exit 1
fi
case "$mode" in
  oracle:*)
    expected=${mode#oracle:}
    if ! cmp -s "$out" "$expected"; then
      echo "FAIL: stdout differs from $expected:"
      diff -u "$expected" "$out"
      exit 1
    fi
    echo "PASS: stdout equals $expected"
    ;;
  smoke)
    echo "PASS: exit status 0 (teachos-only program: stdout not compared)"
    ;;
  *)
    echo "usage: run_oracle.sh oracle:EXPECTED|smoke PROGDIR PROG [ARGS...]"
    exit 1
    ;;
esac
exit 0
