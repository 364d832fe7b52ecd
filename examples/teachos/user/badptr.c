// badptr: system calls given bad user pointers must fail with EFAULT and leave the caller
// running (the kernel must never fault on them itself, nor write where the user may not).
#include "ulib.h"

static int checks;

static void expect_efault(const char* what, long r) {
  if (r != -EFAULT) fail("%s: returned %ld, expected -EFAULT (%d)", what, r, -EFAULT);
  printf("badptr: %s: EFAULT\n", what);
  ++checks;
}

int main(void) {
  // A layout of four pages: [0] read-write, [1] read-only, [2] unmapped, [3] PROT_NONE.
  char* base =
      mmap(NULL, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(base)) fail("mmap failed");
  char* rw = base;
  char* ro = base + PAGE_SIZE;
  char* unmapped = base + 2 * PAGE_SIZE;
  char* none = base + 3 * PAGE_SIZE;
  memset(base, 'x', 2 * PAGE_SIZE);
  if (mprotect(ro, PAGE_SIZE, PROT_READ) != 0) fail("mprotect read-only failed");
  if (munmap(unmapped, PAGE_SIZE) != 0) fail("munmap failed");
  if (mprotect(none, PAGE_SIZE, PROT_NONE) != 0) fail("mprotect PROT_NONE failed");

  char* kernel = (char*)0x0000800000000000UL;  // first address above the user half
  char* high = (char*)0xffffffc000000000UL;    // where a kernel would live
  char* wrap = (char*)0xfffffffffffff000UL;    // base + length wraps around zero

  // write() reads the user buffer.
  expect_efault("write from NULL", write(1, NULL, 8));
  expect_efault("write from an unmapped page", write(1, unmapped, 8));
  expect_efault("write from a PROT_NONE page", write(1, none, 8));
  expect_efault("write from the kernel half", write(1, kernel, 8));
  expect_efault("write from a high kernel address", write(1, high, 8));
  expect_efault("write with a wrapping range", write(1, wrap, 0x2000));
  expect_efault("write straddling into an unmapped page", write(1, unmapped - 4, 8));
  expect_efault("write of a huge length", write(1, rw, 1UL << 62));

  // clock_gettime() writes a struct timespec (16 bytes).
  expect_efault("clock_gettime into NULL", clock_gettime(CLOCK_MONOTONIC, NULL));
  expect_efault("clock_gettime into read-only memory",
                clock_gettime(CLOCK_MONOTONIC, (struct timespec*)ro));
  expect_efault("clock_gettime into the kernel half",
                clock_gettime(CLOCK_MONOTONIC, (struct timespec*)kernel));
  expect_efault("clock_gettime straddling into a read-only page",
                clock_gettime(CLOCK_MONOTONIC, (struct timespec*)(ro - 8)));
  expect_efault("clock_gettime straddling into an unmapped page",
                clock_gettime(CLOCK_MONOTONIC, (struct timespec*)(unmapped - 8)));
  for (int i = 0; i < (int)PAGE_SIZE; ++i)
    if (ro[i] != 'x') fail("clock_gettime changed read-only memory at offset %d", i);

  // read() into read-only memory: the kernel must not write there. Linux reports EFAULT once
  // it has data to copy; with nothing to read (stdin at end of file) it may answer 0 instead,
  // so both are accepted, but never a count of bytes "read" into the page.
  long r = read(0, ro, 16);
  if (r != -EFAULT && r != 0) fail("read into read-only memory returned %ld", r);
  r = read(0, unmapped - 8, 16);
  if (r != -EFAULT && r != 0) fail("read straddling into an unmapped page returned %ld", r);
  for (int i = 0; i < (int)PAGE_SIZE; ++i)
    if (ro[i] != 'x') fail("read changed read-only memory at offset %d", i);
  printf("badptr: read into read-only or partly unmapped memory: refused\n");

  // futex() reads the word it would wait on.
  expect_efault("futex wait on an unmapped word", futex((int*)unmapped, FUTEX_WAIT, 0, NULL));
  expect_efault("futex wait on a kernel-half word", futex((int*)kernel, FUTEX_WAIT, 0, NULL));

  // wait4() writes the status. Whether the child is reaped anyway differs (Linux reaps it,
  // teachos keeps it for the next wait): both are accepted, but it must be reaped exactly once.
  for (int k = 0; k < 2; ++k) {
    pid_t pid = fork();
    if (pid < 0) fail("fork failed: %d", pid);
    if (pid == 0) exit(3);
    msleep(20);
    expect_efault(
        k == 0 ? "wait4 status into an unmapped page" : "wait4 status into read-only memory",
        wait4(pid, (int*)(k == 0 ? unmapped : ro), 0, 0));
    int status = 0;
    pid_t again = waitpid(pid, &status, 0);
    if (again != -ECHILD && !(again == pid && WIFEXITED(status) && WEXITSTATUS(status) == 3))
      fail("wait4 after the EFAULT returned %d (status 0x%x)", again, status);
    if (waitpid(-1, NULL, WNOHANG) != -ECHILD) fail("a child is left after the EFAULT wait");
  }

  // execve() reads the path, the argv array and every string it points to.
  char* good_argv[] = {"hello", NULL};
  char* bad_string_argv[] = {"hello", unmapped, NULL};
  expect_efault("execve with an unmapped path", execve(unmapped, good_argv, good_argv + 1));
  expect_efault("execve with a kernel-half path", execve(kernel, good_argv, good_argv + 1));
  expect_efault("execve with an unmapped argv", execve("hello", (char**)unmapped, good_argv + 1));
  expect_efault("execve with a bad argv string", execve("hello", bad_string_argv, good_argv + 1));
  expect_efault("execve with an unmapped envp", execve("hello", good_argv, (char**)unmapped));

  // The caller's memory is still intact and usable.
  for (int i = 0; i < (int)PAGE_SIZE; ++i)
    if (rw[i] != 'x') fail("the read-write page changed");
  printf("badptr: %d bad pointers refused, process alive\n", checks);
  return 0;
}
