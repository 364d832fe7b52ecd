// mmaptest: anonymous mappings: private, shared, fixed; munmap of a middle part; mprotect;
// inheritance across fork; access after munmap.
#include "ulib.h"

#define RW (PROT_READ | PROT_WRITE)
#define ANON_PRIVATE (MAP_PRIVATE | MAP_ANONYMOUS)
#define ANON_SHARED (MAP_SHARED | MAP_ANONYMOUS)

static char* map(void* hint, size_t n, int prot, int flags, const char* what) {
  char* p = mmap(hint, n, prot, flags, -1, 0);
  if (mmap_failed(p)) fail("%s: mmap failed with errno %ld", what, mmap_errno(p));
  return p;
}

static void fill(char* p, size_t n, char seed) {
  for (size_t i = 0; i < n; i += 512) p[i] = (char)(seed + (char)(i / 512));
}

static void check(const char* what, const char* p, size_t n, char seed) {
  for (size_t i = 0; i < n; i += 512)
    if (p[i] != (char)(seed + (char)(i / 512))) fail("%s: wrong byte at offset %lu", what, i);
}

static void test_private(void) {
  size_t n = 10 * PAGE_SIZE;
  char* p = map(NULL, n, RW, ANON_PRIVATE, "private");
  if ((uintptr_t)p % PAGE_SIZE) fail("private: mapping not page aligned");
  fill(p, n, 1);
  check("private", p, n, 1);
  if (munmap(p, n) != 0) fail("private: munmap failed");
  printf("mmaptest: private mapping ok\n");
}

static void test_errors(void) {
  char* p = mmap(NULL, 0, RW, ANON_PRIVATE, -1, 0);
  if (!mmap_failed(p) || mmap_errno(p) != EINVAL) fail("mmap of length 0 did not give EINVAL");
  p = mmap((void*)0x12345, PAGE_SIZE, RW, ANON_PRIVATE | MAP_FIXED, -1, 0);
  if (!mmap_failed(p) || mmap_errno(p) != EINVAL) fail("unaligned MAP_FIXED did not give EINVAL");
  p = mmap(NULL, PAGE_SIZE, RW, MAP_ANONYMOUS, -1, 0);  // neither shared nor private
  if (!mmap_failed(p) || mmap_errno(p) != EINVAL) fail("mmap without SHARED/PRIVATE not EINVAL");
  if (munmap((void*)0x12345, PAGE_SIZE) != -EINVAL) fail("unaligned munmap did not give EINVAL");
  if (mprotect((void*)0x12345, PAGE_SIZE, PROT_READ) != -EINVAL)
    fail("unaligned mprotect did not give EINVAL");
  printf("mmaptest: bad arguments rejected with EINVAL\n");
}

static void test_fixed(void) {
  // Reserve a range, then replace its middle with MAP_FIXED: the new pages are fresh (zero),
  // the pages around them keep their data.
  size_t n = 8 * PAGE_SIZE;
  char* p = map(NULL, n, RW, ANON_PRIVATE, "fixed reserve");
  memset(p, 'a', n);
  char* mid = p + 2 * PAGE_SIZE;
  char* q = map(mid, 3 * PAGE_SIZE, RW, ANON_PRIVATE | MAP_FIXED, "fixed");
  if (q != mid) fail("MAP_FIXED returned another address");
  for (size_t i = 0; i < 3 * PAGE_SIZE; ++i)
    if (q[i] != 0) fail("MAP_FIXED: replaced page not zero");
  if (p[0] != 'a' || p[2 * PAGE_SIZE - 1] != 'a' || p[5 * PAGE_SIZE] != 'a' || p[n - 1] != 'a')
    fail("MAP_FIXED changed the pages around it");
  if (munmap(p, n) != 0) fail("fixed: munmap failed");
  printf("mmaptest: fixed mapping replaces the middle, neighbours intact\n");
}

static char* hole_base;

static void touch_hole(void* arg) {
  (void)arg;
  volatile char* h = hole_base + 4 * PAGE_SIZE;
  char c = *h;
  printf("mmaptest: FAIL: read from the unmapped middle gave %d\n", c);
}

static void test_munmap_middle(void) {
  size_t n = 10 * PAGE_SIZE;
  char* p = map(NULL, n, RW, ANON_PRIVATE, "munmap middle");
  fill(p, n, 7);
  if (munmap(p + 3 * PAGE_SIZE, 4 * PAGE_SIZE) != 0) fail("munmap of the middle failed");
  check("munmap middle: head", p, 3 * PAGE_SIZE, 7);
  // The tail's pattern continues from where it was: check it at its own offsets.
  for (size_t i = 7 * PAGE_SIZE; i < n; i += 512)
    if (p[i] != (char)(7 + (char)(i / 512))) fail("munmap middle: tail changed");
  printf("mmaptest: munmap of the middle keeps head and tail\n");
  hole_base = p;
  expect_killed("mmaptest: read from the unmapped middle", run_in_child(touch_hole, NULL), SIGSEGV);
  // munmap of a range that is already partly unmapped is fine.
  if (munmap(p, n) != 0) fail("munmap over a hole failed");
}

static char* ro_page;

static void write_ro(void* arg) {
  (void)arg;
  *(volatile char*)ro_page = 'x';
  printf("mmaptest: FAIL: write to a read-only page did not fault\n");
}

static void test_mprotect(void) {
  size_t n = 4 * PAGE_SIZE;
  char* p = map(NULL, n, RW, ANON_PRIVATE, "mprotect");
  memset(p, 'm', n);
  if (mprotect(p + PAGE_SIZE, PAGE_SIZE, PROT_READ) != 0) fail("mprotect read-only failed");
  if (p[PAGE_SIZE] != 'm') fail("mprotect: read-only page lost its data");
  p[0] = 'w';  // the neighbours stay writable
  p[2 * PAGE_SIZE] = 'w';
  ro_page = p + PAGE_SIZE;
  expect_killed("mmaptest: write after mprotect(PROT_READ)", run_in_child(write_ro, NULL), SIGSEGV);
  if (mprotect(p + PAGE_SIZE, PAGE_SIZE, RW) != 0) fail("mprotect back to read-write failed");
  p[PAGE_SIZE] = 'w';
  if (p[PAGE_SIZE] != 'w') fail("mprotect: page not writable again");
  if (munmap(p, n) != 0) fail("mprotect: munmap failed");
  printf("mmaptest: mprotect back to read-write works\n");
}

static char* shared_area;
static char* private_area;

static void child_writes(void* arg) {
  (void)arg;
  if (shared_area[0] != 's' || private_area[0] != 'p') {
    printf("mmaptest: FAIL: child does not see the parent's data\n");
    exit(1);
  }
  shared_area[0] = 'S';
  shared_area[PAGE_SIZE] = 'T';
  private_area[0] = 'P';
}

static void test_fork_inheritance(void) {
  size_t n = 2 * PAGE_SIZE;
  shared_area = map(NULL, n, RW, ANON_SHARED, "shared");
  private_area = map(NULL, n, RW, ANON_PRIVATE, "private for fork");
  shared_area[0] = 's';
  private_area[0] = 'p';
  expect_exit0("mmaptest: fork child", run_in_child(child_writes, NULL));
  if (shared_area[0] != 'S' || shared_area[PAGE_SIZE] != 'T')
    fail("shared mapping: the child's writes are not visible in the parent");
  if (private_area[0] != 'p') fail("private mapping: the child's write leaked into the parent");
  printf("mmaptest: after fork, shared stays shared and private is copied\n");
  if (munmap(shared_area, n) != 0 || munmap(private_area, n) != 0) fail("fork: munmap failed");
}

static char* gone;

static void touch_gone(void* arg) {
  (void)arg;
  *(volatile char*)gone = 1;
  printf("mmaptest: FAIL: write after munmap did not fault\n");
}

static void test_after_munmap(void) {
  gone = map(NULL, PAGE_SIZE, RW, ANON_PRIVATE, "after munmap");
  gone[0] = 1;
  if (munmap(gone, PAGE_SIZE) != 0) fail("munmap failed");
  expect_killed("mmaptest: write after munmap", run_in_child(touch_gone, NULL), SIGSEGV);
}

static void test_many(void) {
  // Many small mappings, each with its own data, then all unmapped.
  enum { kCount = 64 };
  char* maps[kCount];
  for (int i = 0; i < kCount; ++i) {
    maps[i] = map(NULL, PAGE_SIZE * (size_t)(1 + i % 3), RW, ANON_PRIVATE, "many");
    maps[i][0] = (char)i;
  }
  for (int i = 0; i < kCount; ++i)
    if (maps[i][0] != (char)i) fail("many mappings: mapping %d lost its data", i);
  for (int i = 0; i < kCount; ++i)
    if (munmap(maps[i], PAGE_SIZE * (size_t)(1 + i % 3)) != 0) fail("many: munmap failed");
  printf("mmaptest: %d mappings created and removed\n", kCount);
}

int main(void) {
  test_private();
  test_errors();
  test_fixed();
  test_munmap_middle();
  test_mprotect();
  test_fork_inheritance();
  test_after_munmap();
  test_many();
  printf("mmaptest: all ok\n");
  return 0;
}
