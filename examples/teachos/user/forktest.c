// forktest: fork many children and wait for them all; wait4's corner cases; a chain of
// forks; and (teachos-only) filling the process table until fork answers EAGAIN.
#include "ulib.h"

#define NCHILD 40
#define NPROC 64  // teachos's process table size

static void test_many_children(void) {
  pid_t pids[NCHILD];
  pid_t me = getpid();
  for (int i = 0; i < NCHILD; ++i) {
    pids[i] = fork();
    if (pids[i] < 0) fail("fork %d failed: %d", i, pids[i]);
    if (pids[i] == 0) {
      if (getppid() != me) exit(100);
      exit(i + 1);  // each child leaves its own code
    }
  }
  // Reap in whatever order they finish; every pid must come back once with its own code.
  int seen[NCHILD] = {0};
  for (int n = 0; n < NCHILD; ++n) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    int i = 0;
    while (i < NCHILD && pids[i] != pid) ++i;
    if (i == NCHILD) fail("wait4 returned %d, not one of our children", pid);
    if (seen[i]++) fail("child %d reaped twice", i);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != i + 1)
      fail("child %d: status 0x%x, expected exit %d", i, status, i + 1);
  }
  if (waitpid(-1, NULL, 0) != -ECHILD) fail("wait4 with no children left did not give ECHILD");
  printf("forktest: %d children exited with their own codes; then ECHILD\n", NCHILD);
}

static void test_wait_specific(void) {
  // wait4 for one given pid, and WNOHANG while the child still runs.
  volatile int* go =
      mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(go)) fail("mmap failed");
  pid_t a = fork();
  if (a == 0) {
    while (!*go) msleep(1);
    exit(7);
  }
  pid_t b = fork();
  if (b == 0) exit(8);
  if (a < 0 || b < 0) fail("fork failed");
  int status;
  if (waitpid(a, &status, WNOHANG) != 0) fail("WNOHANG on a running child did not return 0");
  if (waitpid(b, &status, 0) != b || WEXITSTATUS(status) != 8) fail("wait for b failed");
  *go = 1;
  if (waitpid(a, &status, 0) != a || WEXITSTATUS(status) != 7) fail("wait for a failed");
  if (waitpid(12345678, &status, 0) != -ECHILD) fail("wait for a stranger did not give ECHILD");
  munmap((void*)go, PAGE_SIZE);
  printf("forktest: wait4 for a given pid, WNOHANG, strangers: ok\n");
}

static void test_chain(void) {
  // Each process forks the next one and passes on its depth in the exit code.
  int depth = 0;
  for (;;) {
    if (depth == 20) exit(depth);
    pid_t pid = fork();
    if (pid < 0) fail("fork in the chain failed: %d", pid);
    if (pid == 0) {
      ++depth;
      continue;
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) exit(200);
    if (depth > 0) exit(WEXITSTATUS(status));
    if (WEXITSTATUS(status) != 20) fail("chain of forks came back with %d", WEXITSTATUS(status));
    break;
  }
  printf("forktest: a chain of 20 nested forks came back\n");
}

// teachos-only: fork until the process table is full, then reap everything.
static void test_fill_table(void) {
  volatile int* go =
      mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(go)) fail("mmap failed");
  *go = 0;  // fault the shared page in now, so it is not counted as a leak below
  long free_before = teachos_freemem();
  int n = 0;
  pid_t r;
  for (;;) {
    r = fork();
    if (r == 0) {
      while (!*go) msleep(5);
      exit(0);
    }
    if (r < 0) break;
    if (++n > NPROC) fail("forked %d children: the process table has no limit", n);
  }
  if (r != -EAGAIN) fail("fork on a full table returned %d, expected -EAGAIN", r);
  if (n < 1) fail("no fork succeeded before EAGAIN");
  *go = 1;
  for (int i = 0; i < n; ++i) {
    int status;
    if (waitpid(-1, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      fail("reaping the table filler %d failed", i);
  }
  // With the table empty again, fork works again.
  pid_t again = fork();
  if (again == 0) exit(0);
  if (again < 0 || waitpid(again, NULL, 0) != again) fail("fork after reaping failed");
  // Every frame the children used is back (the kernel may free some after a grace period:
  // give it a moment). The slack covers our own stack growing by a page or two; a leak of
  // even one frame per child would be larger than it.
  long slack = 8 * (long)PAGE_SIZE;
  long free_after = teachos_freemem();
  for (int i = 0; i < 100 && free_after + slack < free_before; ++i) {
    msleep(20);
    free_after = teachos_freemem();
  }
  if (free_after + slack < free_before)
    fail("%ld bytes of memory not returned after reaping %d children", free_before - free_after, n);
  fprintf(2, "forktest: table full after %d children\n", n);
  printf("forktest: process table full: fork gave EAGAIN; all reaped, memory returned\n");
  munmap((void*)go, PAGE_SIZE);
}

int main(void) {
  test_many_children();
  test_wait_specific();
  test_chain();
  if (on_teachos())
    test_fill_table();
  else
    printf("forktest: not on teachos: process-table test skipped\n");
  printf("forktest: all ok\n");
  return 0;
}
