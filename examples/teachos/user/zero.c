// zero: every page a process gets from the kernel must read as zero: fresh heap (sbrk),
// anonymous mmap (private and shared), and stack pages below what the program used so far.
// A kernel that reuses frames without clearing them leaks another process's data.
#include "ulib.h"

static void check_zero(const char* what, const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) fail("%s: byte %lu of %lu is 0x%x, not zero", what, i, n, p[i]);
  printf("zero: %s: %lu bytes zero\n", what, n);
}

// Dirties memory and frees it, so recycled frames would show old data if not cleared.
static void dirty_and_release(void) {
  size_t n = 64 * PAGE_SIZE;
  unsigned char* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(p)) fail("mmap for dirtying failed: %ld", mmap_errno(p));
  memset(p, 0xa5, n);
  if (munmap(p, n) != 0) fail("munmap failed");
  unsigned char* h = sbrk((long)n);
  if (h == (void*)-1) fail("sbrk for dirtying failed");
  memset(h, 0x5a, n);
  if (sbrk(-(long)n) == (void*)-1) fail("shrinking sbrk failed");
}

// Uses 256 KiB of stack that the program has never touched and checks it reads as zero
// before writing it.
static __attribute__((noinline)) void check_stack(void) {
  unsigned char buf[256 * 1024];
  // Reading never-written stack is the point here: launder the pointer through an empty asm so
  // gcc neither warns about nor optimises away the uninitialised reads.
  volatile unsigned char* p = buf;
  __asm__ volatile("" : "+r"(p) : : "memory");
  // Only the part below this frame's locals is untouched; the array is all new pages except
  // perhaps its top, which the call sequence may have touched. Check the lower 240 KiB.
  for (size_t i = 0; i < 240 * 1024; ++i)
    if (p[i] != 0) fail("stack: byte %lu below the stack is 0x%x, not zero", i, p[i]);
  for (size_t i = 0; i < sizeof buf; i += 512) p[i] = 1;
  printf("zero: stack: %d bytes zero\n", 240 * 1024);
}

// In a child, the same checks: a forked process's new pages are zero too.
static void child_checks(void* arg) {
  (void)arg;
  size_t n = 16 * PAGE_SIZE;
  unsigned char* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(p)) fail("child mmap failed");
  check_zero("child mmap", p, n);
}

int main(void) {
  dirty_and_release();
  size_t n = 32 * PAGE_SIZE;
  unsigned char* h = sbrk((long)n);
  if (h == (void*)-1) fail("sbrk failed");
  check_zero("sbrk", h, n);
  unsigned char* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(p)) fail("mmap private failed: %ld", mmap_errno(p));
  check_zero("mmap private", p, n);
  unsigned char* s = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(s)) fail("mmap shared failed: %ld", mmap_errno(s));
  check_zero("mmap shared", s, n);
  // After a partial munmap and re-mmap at the same place, the new pages are zero again.
  memset(p, 0x77, n);
  if (munmap(p + 4 * PAGE_SIZE, 4 * PAGE_SIZE) != 0) fail("munmap middle failed");
  unsigned char* q = mmap(p + 4 * PAGE_SIZE, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (q != p + 4 * PAGE_SIZE) fail("mmap fixed into the hole failed");
  check_zero("mmap fixed after munmap", q, 4 * PAGE_SIZE);
  check_stack();
  expect_exit0("zero: child", run_in_child(child_checks, NULL));
  return 0;
}
