// lazytest: memory is allocated lazily, on first touch.
// A. sbrk 1 GiB and touch every 64th page: the frames used (teachos_freemem) equal the pages
//    touched, plus the page tables that map them.
// B. Shrink the break, then write below the old break: the writer (a child) is killed.
// C. Allocate until the kernel refuses (sbrk answers -1, mmap ENOMEM), free it all, and
//    allocate again.
// D. A child touches pages until physical memory runs out: the kernel kills it (SIGKILL),
//    not itself, and gets every frame back.
// A's and D's frame counting, B and C need teachos (qemu-riscv64's brk does not unmap on
// shrink, and its address space is the host's); under qemu only the touching of A runs.
#include "ulib.h"

#define GIB (1UL << 30)
#define STRIDE 64

static void test_sparse_touch(int teachos) {
  long free0 = teachos_freemem();
  char* heap = sbrk((long)GIB);
  if (heap == (void*)-1) fail("sbrk of 1 GiB failed");
  long free1 = teachos_freemem();
  unsigned long touched = 0;
  for (unsigned long off = 0; off < GIB; off += STRIDE * PAGE_SIZE) {
    heap[off] = (char)(off >> 12);
    ++touched;
  }
  long free2 = teachos_freemem();
  for (unsigned long off = 0; off < GIB; off += STRIDE * PAGE_SIZE)
    if (heap[off] != (char)(off >> 12)) fail("touched page at offset %lu lost its byte", off);
  if (teachos) {
    long sbrk_cost = (free0 - free1) / (long)PAGE_SIZE;
    long touch_cost = (free1 - free2) / (long)PAGE_SIZE;
    // Leaf page tables: one per 2 MiB of the range (every one holds touched pages), plus a
    // few upper-level tables.
    long tables = (long)(GIB / (2UL << 20)) + 4;
    fprintf(2, "lazytest: sbrk took %ld frames; touching %lu pages took %ld frames\n", sbrk_cost,
            touched, touch_cost);
    if (sbrk_cost > 2) fail("sbrk of 1 GiB took %ld frames before any touch", sbrk_cost);
    if (touch_cost < (long)touched || touch_cost > (long)touched + tables)
      fail("touching %lu pages took %ld frames (expected %lu plus at most %ld page tables)",
           touched, touch_cost, touched, tables);
    printf(
        "lazytest: 1 GiB break, every %dth page touched: frames used = pages touched "
        "(+ page tables)\n",
        STRIDE);
  } else {
    printf("lazytest: 1 GiB break, every %dth page touched (frame counts need teachos)\n", STRIDE);
  }
  if (sbrk(-(long)GIB) == (void*)-1) fail("shrinking the break by 1 GiB failed");
  if (teachos) {
    long free3 = teachos_freemem();
    for (int i = 0; i < 100 && free3 < free1; ++i) {
      msleep(20);
      free3 = teachos_freemem();
    }
    if (free3 < free1) fail("shrinking the break did not free the touched frames");
    printf("lazytest: shrinking the break frees the frames\n");
  }
}

static char* stale;

static void write_stale(void* arg) {
  (void)arg;
  *(volatile char*)stale = 1;
  printf("lazytest: FAIL: write below a shrunk break did not fault\n");
}

static void test_shrink_then_write(void) {
  char* p = sbrk(16 * PAGE_SIZE);
  if (p == (void*)-1) fail("sbrk failed");
  memset(p, 1, 16 * PAGE_SIZE);
  // Shrink by whole pages from a page-aligned end, so the pages really go away.
  char* end = sbrk(0);
  unsigned long cut = (unsigned long)end - (((unsigned long)p + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1));
  if (sbrk(-(long)cut) == (void*)-1) fail("shrinking failed");
  stale = end - PAGE_SIZE;
  expect_killed("lazytest: write below a shrunk break", run_in_child(write_stale, NULL), SIGSEGV);
  // Growing again gives fresh zero pages.
  char* again = sbrk((long)cut);
  if (again == (void*)-1) fail("growing again failed");
  for (unsigned long i = 0; i < cut; ++i)
    if (again[i] != 0) fail("regrown break not zero at %lu", i);
  printf("lazytest: regrown break is zero\n");
}

#define MAXMAPS 4096

static void test_until_failure(void) {
  // The break first: grow it by 1 GiB steps until the kernel says no.
  long grown = 0;
  while (sbrk((long)GIB) != (void*)-1)
    if (++grown > 1 << 20) fail("the break grows without limit");
  if (sbrk(-(long)GIB * grown) == (void*)-1) fail("shrinking the break back failed");
  if (sbrk((long)GIB) == (void*)-1) fail("after shrinking, the break cannot grow again");
  sbrk(-(long)GIB);
  fprintf(2, "lazytest: the break grew by %ld GiB before failing\n", grown);
  printf("lazytest: the break grows until the kernel refuses, then shrinks and grows again\n");

  // Then mmap: 1 GiB mappings until ENOMEM.
  static void* maps[MAXMAPS];
  int n = 0;
  void* p;
  for (;;) {
    p = mmap(NULL, GIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mmap_failed(p)) break;
    if (n == MAXMAPS) fail("mmap gave %d GiB without running out", MAXMAPS);
    maps[n++] = p;
  }
  if (mmap_errno(p) != ENOMEM) fail("mmap failed with %ld, expected ENOMEM", mmap_errno(p));
  if (n == 0) fail("not even one 1 GiB mapping");
  ((char*)maps[n / 2])[12345] = 1;  // one page of one of them is really used
  for (int i = 0; i < n; ++i)
    if (munmap(maps[i], GIB) != 0) fail("munmap %d failed", i);
  for (int i = 0; i < n; ++i) {
    maps[i] = mmap(NULL, GIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mmap_failed(maps[i])) fail("after munmap, mapping %d of %d failed again", i, n);
  }
  for (int i = 0; i < n; ++i) munmap(maps[i], GIB);
  fprintf(2, "lazytest: %d mappings of 1 GiB before ENOMEM\n", n);
  printf("lazytest: mmap until ENOMEM, munmap all, the same mappings again\n");
}

static void exhaust(void* arg) {
  (void)arg;
  char* p = mmap(NULL, 64 * GIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(p)) {
    printf("lazytest: FAIL: mmap of 64 GiB failed: %ld\n", mmap_errno(p));
    exit(1);
  }
  for (unsigned long off = 0; off < 64 * GIB; off += PAGE_SIZE) p[off] = 1;
  printf("lazytest: FAIL: touched 64 GiB\n");
}

static void test_out_of_frames(void) {
  long before = teachos_freemem();
  expect_killed("lazytest: touching more pages than there are frames", run_in_child(exhaust, NULL),
                SIGKILL);
  long after = teachos_freemem();
  for (int i = 0; i < 100 && after < before; ++i) {
    msleep(20);
    after = teachos_freemem();
  }
  if (after < before) fail("%ld bytes not returned after the child was killed", before - after);
  printf("lazytest: every frame came back after the kill\n");
}

int main(void) {
  int teachos = on_teachos();
  test_sparse_touch(teachos);
  if (teachos) {
    test_shrink_then_write();
    test_until_failure();
    test_out_of_frames();
  } else {
    printf("lazytest: not on teachos: shrink, exhaustion and out-of-frames tests skipped\n");
  }
  printf("lazytest: all ok\n");
  return 0;
}
