// stacktest: the stack grows on demand up to its limit (8 MiB, as Linux's default); running
// past the limit hits the guard below it and kills the process (a forked child here).
#include "ulib.h"

#define FRAME 1024

// Each call uses about FRAME bytes of stack; the array is written and read back so the
// compiler keeps it and every page the stack grows into is really touched.
static unsigned long recurse(long depth, unsigned long seed) {
  volatile unsigned char buf[FRAME];
  for (int i = 0; i < FRAME; i += 64) buf[i] = (unsigned char)(seed + (unsigned long)i);
  unsigned long sum = 0;
  if (depth > 0) sum = recurse(depth - 1, seed * 31 + 7);
  for (int i = 0; i < FRAME; i += 64) sum += buf[i];
  return sum;
}

// Recursion without end (`never` is never reached; it only hides the endlessness from gcc's
// warning): dies at the guard.
static volatile unsigned long never = ~0UL;
static unsigned long forever(unsigned long n) {
  volatile unsigned char buf[FRAME];
  if (n == never) return 0;
  buf[0] = (unsigned char)n;
  buf[FRAME - 1] = (unsigned char)n;
  return forever(n + 1) + buf[0] + buf[FRAME - 1];
}

static void overflow(void* arg) {
  (void)arg;
  printf("stacktest: FAIL: endless recursion returned %lu\n", forever(0));
}

// The same sum computed without recursion, to check the deep stack kept every frame's data.
static unsigned long expected_sum(long depth, unsigned long seed) {
  unsigned long sum = 0;
  for (long d = depth; d >= 0; --d) {
    for (int i = 0; i < FRAME; i += 64) sum += (unsigned char)(seed + (unsigned long)i);
    seed = seed * 31 + 7;
  }
  return sum;
}

int main(void) {
  // About 4 MiB of stack: well inside the limit, far beyond what the program starts with.
  long depth = 4000;
  unsigned long got = recurse(depth, 1);
  unsigned long want = expected_sum(depth, 1);
  if (got != want) fail("deep recursion: sum %lu, expected %lu", got, want);
  printf("stacktest: recursion depth %ld (about 4 MiB of stack) ok\n", depth);
  // A second time: the grown stack stays usable.
  if (recurse(depth, 2) != expected_sum(depth, 2)) fail("second deep recursion: wrong sum");
  printf("stacktest: second deep recursion ok\n");
  expect_killed("stacktest: endless recursion", run_in_child(overflow, NULL), SIGSEGV);
  return 0;
}
