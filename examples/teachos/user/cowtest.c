// cowtest: fork shares memory copy-on-write.
// A. Fill two thirds of free memory, then fork: only works if fork shares the frames; the
//    free-frame count (teachos_freemem) shows fork took almost nothing and a write takes a frame.
// B. Three processes write the same (shared, COW) pages: each sees only its own data.
// C. The kernel itself writes into a COW page (clock_gettime, wait4's status): it must copy
//    the page first, like a user store would.
// D. 100 rounds of fork inside fork.
// E. The physical address (teachos_vtop) is the same in parent and child after fork and
//    differs after the child writes.
// The measurements of A and E need teachos; under qemu-riscv64 A uses 64 MiB and E is skipped.
#include "ulib.h"

#define COW_PAGES 8
static char data[COW_PAGES * PAGE_SIZE] __attribute__((aligned(4096)));
static volatile long* sync_area;  // MAP_SHARED: counters the processes meet at

static void meet(int slot, long parties) {
  atomic_add(&sync_area[slot], 1);
  while (atomic_load(&sync_area[slot]) < parties) msleep(1);
}

static void reset_sync(void) { memset((void*)sync_area, 0, PAGE_SIZE); }

static int reap(pid_t pid, const char* what) {
  int status;
  if (waitpid(pid, &status, 0) != pid) fail("%s: wait4 failed", what);
  expect_exit0(what, status);
  return status;
}

// ---- A ----
static void test_big_fork(void) {
  long free0 = teachos_freemem();
  int teachos = free0 >= 0;
  unsigned long size = teachos ? ((unsigned long)free0 / 3 * 2) & ~(PAGE_SIZE - 1) : 64UL << 20;
  unsigned long pages = size / PAGE_SIZE;
  char* big = sbrk((long)size);
  if (big == (void*)-1) fail("sbrk of %lu bytes failed", size);
  for (unsigned long i = 0; i < pages; ++i) big[i * PAGE_SIZE] = (char)(i * 7);
  reset_sync();  // touches the shared page before the measurement starts
  long free1 = teachos_freemem();
  pid_t pid = fork();
  if (pid < 0) fail("fork with two thirds of memory in use failed: %d", pid);
  if (pid == 0) {
    for (unsigned long i = 0; i < pages; i += 61)
      if (big[i * PAGE_SIZE] != (char)(i * 7)) exit(1);
    meet(0, 2);  // the parent measures now: nothing copied yet
    meet(1, 2);
    for (unsigned long i = 0; i < 16; ++i) big[i * PAGE_SIZE] = 'c';  // 16 private copies
    meet(2, 2);
    meet(3, 2);
    exit(0);
  }
  meet(0, 2);
  long free2 = teachos_freemem();
  meet(1, 2);
  meet(2, 2);
  long free3 = teachos_freemem();
  meet(3, 2);
  reap(pid, "cowtest: big fork child");
  for (unsigned long i = 0; i < pages; i += 61)
    if (big[i * PAGE_SIZE] != (char)(i * 7)) fail("big region changed in the parent");
  if (sbrk(-(long)size) == (void*)-1) fail("shrinking the break failed");
  if (teachos) {
    long fork_cost = (free1 - free2) / (long)PAGE_SIZE;
    long write_cost = (free2 - free3) / (long)PAGE_SIZE;
    fprintf(2, "cowtest: %lu pages; fork took %ld frames, 16 child writes took %ld\n", pages,
            fork_cost, write_cost);
    // The fork copies page tables and the child's kernel state, not the data.
    if (fork_cost > (long)pages / 16) fail("fork took %ld frames for %lu pages", fork_cost, pages);
    if (write_cost < 16) fail("16 writes to COW pages took only %ld frames", write_cost);
    printf("cowtest: fork of two thirds of memory shares the frames; writes copy them\n");
  } else {
    printf("cowtest: fork of a 64 MiB heap ok (frame counts need teachos)\n");
  }
}

// ---- B ----
static void fill(char c) {
  for (unsigned long i = 0; i < sizeof data; i += 64) data[i] = c;
}

static int all(char c) {
  for (unsigned long i = 0; i < sizeof data; i += 64)
    if (data[i] != c) return 0;
  return 1;
}

static void test_three_writers(void) {
  fill('P');
  reset_sync();
  pid_t kids[2];
  for (int k = 0; k < 2; ++k) {
    kids[k] = fork();
    if (kids[k] < 0) fail("fork failed");
    if (kids[k] == 0) {
      char mine = (char)('A' + k);
      if (!all('P')) exit(1);
      meet(0, 3);
      fill(mine);
      meet(1, 3);  // everyone has written
      exit(all(mine) ? 0 : 2);
    }
  }
  meet(0, 3);
  fill('Q');
  meet(1, 3);
  reap(kids[0], "cowtest: writer A");
  reap(kids[1], "cowtest: writer B");
  if (!all('Q')) fail("the parent's pages show another process's writes");
  printf("cowtest: three processes wrote the same COW pages, each sees its own\n");
}

// ---- C ----
// One page that the child does not touch before the kernel writes into it.
static struct {
  long marker_before;
  struct timespec ts;
  int status;
  long marker_after;
} kernel_target __attribute__((aligned(4096)));

static void test_kernel_writes_cow(void) {
  kernel_target.marker_before = 0x1111;
  kernel_target.ts.tv_sec = -1;
  kernel_target.ts.tv_nsec = -1;
  kernel_target.status = -1;
  kernel_target.marker_after = 0x2222;
  pid_t pid = fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    // The first write to this page after fork comes from the kernel.
    if (clock_gettime(CLOCK_MONOTONIC, &kernel_target.ts) != 0) exit(1);
    if (kernel_target.ts.tv_nsec < 0 || kernel_target.ts.tv_nsec >= 1000000000) exit(2);
    if (kernel_target.marker_before != 0x1111 || kernel_target.marker_after != 0x2222) exit(3);
    pid_t g = fork();
    if (g == 0) exit(5);
    if (g < 0) exit(4);
    if (waitpid(g, &kernel_target.status, 0) != g) exit(6);
    if (!WIFEXITED(kernel_target.status) || WEXITSTATUS(kernel_target.status) != 5) exit(7);
    exit(0);
  }
  reap(pid, "cowtest: kernel writes into a COW page");
  if (kernel_target.ts.tv_sec != -1 || kernel_target.ts.tv_nsec != -1 || kernel_target.status != -1)
    fail("the child's system calls wrote into the parent's page");
  printf("cowtest: clock_gettime and wait4 into a COW page copy it first\n");
}

// ---- D ----
static void test_fork_in_fork(void) {
  data[0] = 'p';
  data[PAGE_SIZE] = 'q';
  for (int round = 0; round < 100; ++round) {
    pid_t pid = fork();
    if (pid < 0) fail("round %d: fork failed: %d", round, pid);
    if (pid == 0) {
      data[0] = (char)round;
      pid_t g = fork();
      if (g < 0) exit(1);
      if (g == 0) {
        if (data[0] != (char)round || data[PAGE_SIZE] != 'q') exit(2);
        data[0] = (char)(round + 1);
        data[PAGE_SIZE] = 'g';
        exit(0);
      }
      int status;
      if (waitpid(g, &status, 0) != g || status != 0) exit(3);
      exit(data[0] == (char)round && data[PAGE_SIZE] == 'q' ? 0 : 4);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) fail("round %d: wait4 failed", round);
    if (status != 0) fail("round %d: child status 0x%x", round, status);
    if (data[0] != 'p' || data[PAGE_SIZE] != 'q') fail("round %d: parent data changed", round);
  }
  printf("cowtest: 100 rounds of fork in fork\n");
}

// ---- E ----
static void test_vtop(void) {
  if (teachos_vtop(data) == -ENOSYS) {
    printf("cowtest: physical addresses need teachos: skipped\n");
    return;
  }
  data[3 * PAGE_SIZE] = 'v';
  long parent_pa = teachos_vtop(&data[3 * PAGE_SIZE]);
  if (parent_pa < 0) fail("teachos_vtop of a mapped page failed: %ld", parent_pa);
  reset_sync();
  pid_t pid = fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    sync_area[10] = teachos_vtop(&data[3 * PAGE_SIZE]);  // before writing: shared
    data[3 * PAGE_SIZE] = 'w';
    sync_area[11] = teachos_vtop(&data[3 * PAGE_SIZE]);  // after: its own copy
    exit(0);
  }
  reap(pid, "cowtest: vtop child");
  long child_before = sync_area[10], child_after = sync_area[11];
  if (child_before != parent_pa) fail("after fork the child maps another frame");
  if (child_after == parent_pa || child_after < 0) fail("after its write the child still shares");
  if (teachos_vtop(&data[3 * PAGE_SIZE]) != parent_pa) fail("the parent's frame moved");
  if (data[3 * PAGE_SIZE] != 'v') fail("the parent sees the child's write");
  printf("cowtest: same frame after fork, a new one after the write\n");
}

int main(void) {
  sync_area = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(sync_area)) fail("mmap of the shared page failed");
  test_big_fork();
  test_three_writers();
  test_kernel_writes_cow();
  test_fork_in_fork();
  test_vtop();
  printf("cowtest: all ok\n");
  return 0;
}
