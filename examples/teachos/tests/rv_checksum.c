/* A freestanding RV64IMA program for the machine's cross-check (machine_test.cpp): it mixes
 * multiplies, divisions (including by zero and INT_MIN / -1), atomics (AMOs and an LR/SC
 * compare-and-swap loop), loads and stores of every width, prints its checksum with write(1, ...)
 * and exits with the checksum's low byte. Built with riscv64-linux-gnu-gcc -march=rv64ima
 * -mabi=lp64 -ffreestanding -nostdlib -static -O2; run by teachos's hart and by qemu-riscv64,
 * which must agree. The iteration count comes from argc-free code: it is a constant, large
 * enough that the run time is measurable (the test reports MIPS). */
#include <stdint.h>

#ifndef ROUNDS
#define ROUNDS 400000
#endif

static long sys3(long n, long a0, long a1, long a2) {
  register long r_a0 __asm__("a0") = a0;
  register long r_a1 __asm__("a1") = a1;
  register long r_a2 __asm__("a2") = a2;
  register long r_a7 __asm__("a7") = n;
  __asm__ volatile("ecall" : "+r"(r_a0) : "r"(r_a1), "r"(r_a2), "r"(r_a7) : "memory");
  return r_a0;
}

static volatile int64_t divisors[4] = {0, -1, 7, -3};
static uint32_t shared32;
static uint64_t shared64;
static uint8_t bytes[64];

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0x100000001b3ull;
  return h ^ (h >> 29);
}

static uint64_t run(void) {
  uint64_t h = 0xcbf29ce484222325ull;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (long i = 0; i < ROUNDS; ++i) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    int64_t d = divisors[i & 3];
    int64_t sx = (int64_t)x;
    if ((i & 255) == 0) sx = INT64_MIN;
    h = mix(h, (uint64_t)(d == 0 ? 0 : sx / d));          /* the compiler may not see d == 0 */
    h = mix(h, (uint64_t)((int32_t)x / (int32_t)(d | 1)));
    h = mix(h, (uint64_t)((unsigned __int128)x * (x >> 3) >> 64));
    h = mix(h, (uint64_t)((__int128)sx * (__int128)(int64_t)h >> 64));
    h = mix(h, (uint32_t)x % ((uint32_t)i | 1u));
    __atomic_fetch_add(&shared32, (uint32_t)x, __ATOMIC_SEQ_CST);
    __atomic_fetch_xor(&shared64, x, __ATOMIC_SEQ_CST);
    uint64_t old = __atomic_load_n(&shared64, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&shared64, &old, old + (x & 0xff), 1, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED)) {
    }
    bytes[i & 63] = (uint8_t)(bytes[(i * 7) & 63] + (uint8_t)x);
    h = mix(h, (uint64_t)(int8_t)bytes[(i * 5) & 63]);
  }
  h = mix(h, shared32);
  h = mix(h, shared64);
  /* The hardware divide corner cases, through volatile operands so they happen at run time. */
  volatile int64_t zero = 0, minus1 = -1, minv = INT64_MIN;
  h = mix(h, (uint64_t)(minv / minus1));
  h = mix(h, (uint64_t)(minv % minus1));
  __asm__ volatile("" ::: "memory");
  int64_t q, r;
  __asm__ volatile("div %0, %2, %3\n\trem %1, %2, %3" : "=&r"(q), "=&r"(r) : "r"(minv), "r"(zero));
  h = mix(h, (uint64_t)q);
  h = mix(h, (uint64_t)r);
  return h;
}

void _start(void) __attribute__((noreturn, section(".text._start")));
void _start(void) {
  uint64_t h = run();
  char buf[20];
  for (int i = 0; i < 16; ++i) buf[i] = "0123456789abcdef"[(h >> (60 - 4 * i)) & 15];
  buf[16] = '\n';
  sys3(64, 1, (long)buf, 17);
  sys3(93, (long)(h & 0xff), 0, 0);
  for (;;) {
  }
}
