#!/bin/sh
# check_isa.sh OBJDUMP PROGRAM...: fails if a program contains a compressed (RVC) or a
# floating-point instruction; the teachos machine implements RV64IMA only.
set -u
objdump=$1
shift
status=0
for prog in "$@"; do
  # objdump prints each instruction's encoding: 4 hex digits for a 16-bit (compressed) one,
  # 8 for a 32-bit one. Floating-point mnemonics start with f (fence is not one of them), and
  # frcsr/fscsr & co. touch the FP control register.
  bad=$("$objdump" -d -M no-aliases "$prog" | awk -F'\t' '
          /^ *[0-9a-f]+:\t/ {
            enc = $2; gsub(/ /, "", enc); op = $3; sub(/ .*/, "", op)
            if (length(enc) == 4 || (op ~ /^f/ && op !~ /^fence/) || $4 ~ /(^|,)f(csr|rm|flags)($|,)/)
              print
          }')
  if [ -n "$bad" ]; then
    echo "FAIL: $prog has compressed or floating-point instructions:"
    echo "$bad" | head -20
    status=1
  else
    echo "ok: $prog: $("$objdump" -d "$prog" | grep -c '^ *[0-9a-f]*:') instructions, all RV64IMA"
  fi
done
exit $status
