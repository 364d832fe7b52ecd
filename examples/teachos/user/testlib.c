// testlib.c: helpers the test programs share: run a piece of a test in a forked child and
// check how the child ended.
#include "ulib.h"

int run_in_child(void (*fn)(void*), void* arg) {
  pid_t pid = fork();
  if (pid < 0) fail("fork failed: %d", pid);
  if (pid == 0) {
    fn(arg);
    exit(0);
  }
  int status = 0;
  pid_t got = waitpid(pid, &status, 0);
  if (got != pid) fail("wait4 returned %d, expected the child", got);
  return status;
}

void expect_killed(const char* what, int status, int sig) {
  char desc[64];
  describe_status(desc, sizeof desc, status);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != sig)
    fail("%s: expected the child to be killed by signal %d, but it %s", what, sig, desc);
  printf("%s: child %s\n", what, desc);
}

void expect_exit0(const char* what, int status) {
  char desc[64];
  describe_status(desc, sizeof desc, status);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("%s: expected the child to exit 0, but it %s", what, desc);
}

int on_teachos(void) { return teachos_nharts() != -ENOSYS; }
