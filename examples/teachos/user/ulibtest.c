// ulibtest: the user library checks itself: printf formatting, the string functions, malloc,
// the PRNG. Every check compares against a known answer; the output is the same everywhere.
#include "ulib.h"

static int checks;

static void expect_str(const char* what, const char* got, const char* want) {
  if (strcmp(got, want) != 0) fail("%s: got \"%s\", expected \"%s\"", what, got, want);
  ++checks;
}

static void test_printf(void) {
  char b[128];
  snprintf(b, sizeof b, "%d %i %u", -42, 17, 4000000000u);
  expect_str("d i u", b, "-42 17 4000000000");
  snprintf(b, sizeof b, "%ld %lu %lld %zu", -9000000000L, 18446744073709551615UL, -1LL, (size_t)12);
  expect_str("l ll z", b, "-9000000000 18446744073709551615 -1 12");
  snprintf(b, sizeof b, "%d", (int)0x80000000);
  expect_str("INT_MIN", b, "-2147483648");
  snprintf(b, sizeof b, "%ld", (long)0x8000000000000000UL);
  expect_str("LONG_MIN", b, "-9223372036854775808");
  snprintf(b, sizeof b, "%x %X %lx %08x", 0xbeefu, 0xbeefu, 0x123456789abcUL, 0x1fu);
  expect_str("x X lx 08x", b, "beef BEEF 123456789abc 0000001f");
  snprintf(b, sizeof b, "%p %p", (void*)0x1000, (void*)0);
  expect_str("p", b, "0x1000 0x0");
  snprintf(b, sizeof b, "[%5d][%-5d][%05d][%5s][%-5s][%3c][%-3c]", 42, 42, -42, "ab", "ab", 'x',
           'y');
  expect_str("width and flags", b, "[   42][42   ][-0042][   ab][ab   ][  x][y  ]");
  snprintf(b, sizeof b, "[%*d][%-*d]", 4, 1, 3, 2);
  expect_str("star width", b, "[   1][2  ]");
  const char* volatile null_string = NULL;  // volatile: gcc would warn about a literal NULL
  snprintf(b, sizeof b, "%s|%s|%c|%%", "text", null_string, 'z');
  expect_str("s c %", b, "text|(null)|z|%");
  int n = snprintf(b, 6, "%s", "truncated");
  if (n != 9) fail("snprintf returned %d for a 9-character result", n);
  expect_str("truncation", b, "trunc");
  if (snprintf(NULL, 0, "%d", 12345) != 5) fail("snprintf(NULL, 0) did not count");
  ++checks;
  printf("ulibtest: printf formats ok\n");
}

static void test_strings(void) {
  char a[64];
  char b[64];
  if (strlen("") != 0 || strlen("hello") != 5) fail("strlen");
  if (strcmp("abc", "abc") != 0 || strcmp("abc", "abd") >= 0 || strcmp("b", "a") <= 0 ||
      strcmp("ab", "abc") >= 0)
    fail("strcmp");
  if (strncmp("abcX", "abcY", 3) != 0 || strncmp("abcX", "abcY", 4) >= 0) fail("strncmp");
  strcpy(a, "hello");
  strcat(a, ", world");
  expect_str("strcpy/strcat", a, "hello, world");
  if (strchr(a, ',') != a + 5 || strchr(a, 'q') != NULL || strchr(a, 0) != a + 12) fail("strchr");
  strncpy(b, "xy", 5);
  if (b[0] != 'x' || b[1] != 'y' || b[2] || b[3] || b[4]) fail("strncpy does not pad with NULs");
  if (atol("  -1234") != -1234 || atoi("+56x") != 56 || atol("0") != 0) fail("atol/atoi");
  // memmove both ways over an overlap, memcpy at every alignment, memset, memcmp.
  for (int i = 0; i < 64; ++i) a[i] = (char)i;
  memmove(a + 3, a, 20);
  for (int i = 0; i < 20; ++i)
    if (a[i + 3] != (char)i) fail("memmove forward overlap");
  for (int i = 0; i < 64; ++i) a[i] = (char)i;
  memmove(a, a + 5, 30);
  for (int i = 0; i < 30; ++i)
    if (a[i] != (char)(i + 5)) fail("memmove backward overlap");
  for (int src = 0; src < 8; ++src)
    for (int dst = 0; dst < 8; ++dst)
      for (int len = 0; len < 40; len += 3) {
        for (int i = 0; i < 64; ++i) a[i] = (char)(i * 3), b[i] = 0;
        memcpy(b + dst, a + src, (size_t)len);
        for (int i = 0; i < 64; ++i) {
          char want = (i >= dst && i < dst + len) ? (char)((i - dst + src) * 3) : 0;
          if (b[i] != want) fail("memcpy src+%d dst+%d len %d", src, dst, len);
        }
      }
  for (int off = 0; off < 8; ++off) {
    memset(b, 1, sizeof b);
    memset(b + off, 0x7e, 33);
    for (int i = 0; i < 64; ++i)
      if (b[i] != ((i >= off && i < off + 33) ? 0x7e : 1)) fail("memset at offset %d", off);
  }
  if (memcmp("abc", "abd", 2) != 0 || memcmp("abc", "abd", 3) >= 0 ||
      memcmp("\xff", "\x01", 1) <= 0)
    fail("memcmp (bytes compare as unsigned)");
  checks += 10;
  printf("ulibtest: string functions ok\n");
}

static void test_malloc(void) {
  // Sizes across every class and the large (mmap) path; contents must survive.
  static char* blocks[40];
  for (int i = 0; i < 40; ++i) {
    size_t n = (size_t)1 << (i % 20);
    blocks[i] = malloc(n);
    if (!blocks[i]) fail("malloc(%lu) failed", n);
    if ((uintptr_t)blocks[i] % 16) fail("malloc(%lu) not 16-byte aligned", n);
    memset(blocks[i], i, n);
  }
  for (int i = 0; i < 40; ++i) {
    size_t n = (size_t)1 << (i % 20);
    for (size_t k = 0; k < n; k += 97)
      if (blocks[i][k] != (char)i) fail("block %d overwritten", i);
    free(blocks[i]);
  }
  int* z = calloc(1000, sizeof(int));
  if (!z) fail("calloc failed");
  for (int i = 0; i < 1000; ++i)
    if (z[i]) fail("calloc memory not zero");
  char* r = malloc(10);
  strcpy(r, "realloc!");
  r = realloc(r, 100000);
  if (!r) fail("realloc failed");
  expect_str("realloc keeps the contents", r, "realloc!");
  free(r);
  free(z);
  if (calloc((size_t)1 << 40, (size_t)1 << 40) != NULL) fail("calloc overflow not detected");
  free(NULL);
  printf("ulibtest: malloc, calloc, realloc, free ok\n");
}

static void test_rand(void) {
  srand64(42);
  uint64_t first = rand64();
  srand64(42);
  if (rand64() != first) fail("the same seed gave another sequence");
  int buckets[4] = {0};
  for (int i = 0; i < 4000; ++i) buckets[rand_range(4)]++;
  for (int i = 0; i < 4; ++i)
    if (buckets[i] < 800 || buckets[i] > 1200) fail("rand_range(4) is lopsided: %d", buckets[i]);
  srand64(1);
  printf("ulibtest: rand64 after seed 1: %016lx\n", rand64());
}

int main(void) {
  test_printf();
  test_strings();
  test_malloc();
  test_rand();
  printf("ulibtest: %d checks passed\n", checks);
  return 0;
}
