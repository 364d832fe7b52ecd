// rand.c: a small deterministic PRNG (xorshift64*). One global state: programs that use it
// from several threads or processes seed each with its own value.
#include "ulib.h"

static uint64_t state = 0x9e3779b97f4a7c15UL;

void srand64(uint64_t seed) { state = seed ? seed : 0x9e3779b97f4a7c15UL; }

uint64_t rand64(void) {
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545f4914f6cdd1dUL;
}

uint64_t rand_range(uint64_t n) { return n ? rand64() % n : 0; }
