// segv: a child dereferences a null pointer; the parent must survive and decode the status.
// `segv direct` dies itself instead (for usertests, which checks the signal).
#include "ulib.h"

static void null_store(void* arg) {
  (void)arg;
  // The address goes through a volatile so gcc cannot see (and warn about) the null store.
  volatile uintptr_t addr = 0;
  *(volatile int*)addr = 42;
  printf("segv: FAIL: the store to address 0 did not fault\n");
}

static void null_load(void* arg) {
  (void)arg;
  volatile uintptr_t addr = 8;
  int v = *(volatile int*)addr;
  printf("segv: FAIL: the load from address 8 did not fault (read %d)\n", v);
}

static void exit_code(void* arg) {
  (void)arg;
  exit(3);
}

// `segv direct`: the process itself dies (usertests expects SIGSEGV from this run).
int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "direct") == 0) {
    printf("segv: storing to address 0 in this very process\n");
    null_store(NULL);
    return 1;
  }
  expect_killed("segv: null store", run_in_child(null_store, NULL), SIGSEGV);
  expect_killed("segv: null load", run_in_child(null_load, NULL), SIGSEGV);
  int status = run_in_child(exit_code, NULL);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 3) fail("exit(3) gave status 0x%x", status);
  printf("segv: exit(3) child: WIFEXITED=%d WEXITSTATUS=%d\n", WIFEXITED(status),
         WEXITSTATUS(status));
  printf("segv: parent survived\n");
  return 0;
}
