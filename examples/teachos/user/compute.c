// compute: a compute-bound program (no system calls in its loops): a prime sieve and an
// integer matrix multiply. `compute [work]` scales both (default 1); the checksum depends only
// on `work`, so every kernel must print the same line.
#include "ulib.h"

// Counts primes below n and sums them, with the sieve of Eratosthenes.
static void sieve(long n, long* count, unsigned long* sum) {
  unsigned char* composite = calloc((size_t)n, 1);
  if (!composite) fail("calloc(%ld) failed", n);
  *count = 0;
  *sum = 0;
  for (long i = 2; i < n; ++i) {
    if (composite[i]) continue;
    ++*count;
    *sum += (unsigned long)i;
    for (long j = i * i; j < n; j += i) composite[j] = 1;
  }
  free(composite);
}

// C = A * B for n x n matrices of 64-bit integers filled from the PRNG; returns a checksum.
static unsigned long matmul(int n) {
  unsigned long* a = malloc(sizeof(unsigned long) * (size_t)(n * n));
  unsigned long* b = malloc(sizeof(unsigned long) * (size_t)(n * n));
  unsigned long* c = malloc(sizeof(unsigned long) * (size_t)(n * n));
  if (!a || !b || !c) fail("malloc for %dx%d matrices failed", n, n);
  srand64(12345);
  for (int i = 0; i < n * n; ++i) {
    a[i] = rand64() % 1000;
    b[i] = rand64() % 1000;
  }
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      unsigned long s = 0;
      for (int k = 0; k < n; ++k) s += a[i * n + k] * b[k * n + j];
      c[i * n + j] = s;
    }
  unsigned long h = 1469598103934665603UL;  // FNV-1a over the result
  for (int i = 0; i < n * n; ++i) h = (h ^ c[i]) * 1099511628211UL;
  free(a);
  free(b);
  free(c);
  return h;
}

int main(int argc, char** argv, char** envp) {
  (void)envp;
  long work = argc > 1 ? atol(argv[1]) : 1;
  if (work < 1 || work > 1000) fail("work must be in 1..1000, got %s", argv[1]);
  long limit = 200000 * work;
  long count;
  unsigned long sum;
  sieve(limit, &count, &sum);
  // Matrix work grows with n^3: scale n with the cube root of `work` (roughly).
  int n = 48;
  while ((long)n * n * n < 48L * 48 * 48 * work) n += 8;
  unsigned long h = matmul(n);
  printf("compute: work=%ld primes below %ld: %ld (sum %lu)\n", work, limit, count, sum);
  printf("compute: %dx%d matrix checksum %016lx\n", n, n, h);
  // Known answers for the default run, so a wrong multiply or division is caught even if the
  // oracle file was never compared.
  if (work == 1 && (count != 17984 || sum != 1709600813UL)) fail("wrong prime count or sum");
  return 0;
}
