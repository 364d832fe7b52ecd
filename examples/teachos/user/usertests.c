// usertests: runs every test program (fork + execve by bare name: teachos finds it in its
// program directory) and prints one verdict per test and a final count.
//   usertests            everything; grind runs for 5 seconds
//   usertests quick      grind runs for 1 second
//   usertests NAME...    only the tests with these program names (may be combined with quick)
// A test passes when the program exits 0 (each checks itself) or, for the runs that are
// meant to die, when the expected signal killed it. Exit status 0 only if all passed.
#include "ulib.h"

struct Test {
  const char* name;
  const char* arg;  // one optional argument (NULL: none)
  int signal;       // 0: must exit 0; otherwise the signal that must kill it
};

static struct Test tests[] = {
    {"hello", NULL, 0},
    {"ulibtest", NULL, 0},
    {"compute", NULL, 0},
    {"segv", NULL, 0},
    {"segv", "direct", SIGSEGV},
    {"textwrite", NULL, 0},
    {"textwrite", "direct", SIGSEGV},
    {"stacktest", NULL, 0},
    {"zero", NULL, 0},
    {"mmaptest", NULL, 0},
    {"badptr", NULL, 0},
    {"exectest", NULL, 0},
    {"forktest", NULL, 0},
    {"cowtest", NULL, 0},
    {"lazytest", NULL, 0},
    {"threadtest", NULL, 0},
    {"grind", "5", 0},
};
#define NTESTS ((int)(sizeof tests / sizeof tests[0]))

static int selected(const char* name, int argc, char** argv) {
  int any = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "quick") == 0) continue;
    any = 1;
    if (strcmp(argv[i], name) == 0) return 1;
  }
  return !any;
}

// Runs one test; returns its wait status, or -1 if it could not be started.
static int run(const struct Test* t, char** envp) {
  char* argv[3] = {(char*)t->name, (char*)t->arg, NULL};
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    long r = execve(t->name, argv, envp);
    fprintf(2, "usertests: execve(%s) failed: %ld\n", t->name, r);
    exit(r == -ENOEXEC ? 126 : 127);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return status;
}

int main(int argc, char** argv, char** envp) {
  int quick = 0;
  for (int i = 1; i < argc; ++i)
    if (strcmp(argv[i], "quick") == 0) quick = 1;
  int passed = 0, failed = 0;
  for (int i = 0; i < NTESTS; ++i) {
    struct Test t = tests[i];
    if (!selected(t.name, argc, argv)) continue;
    if (quick && strcmp(t.name, "grind") == 0) t.arg = "1";
    char label[48];
    snprintf(label, sizeof label, "%s%s%s", t.name, t.arg ? " " : "", t.arg ? t.arg : "");
    printf("usertests: %s: start\n", label);
    int status = run(&t, envp);
    if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 126 && passed + failed == 0) {
      fprintf(2, "usertests: this host cannot execve RISC-V programs (ENOEXEC); skipped\n");
      return 77;
    }
    char desc[64];
    if (status < 0)
      snprintf(desc, sizeof desc, "could not be started");
    else
      describe_status(desc, sizeof desc, status);
    int ok = status >= 0 && (t.signal ? WIFSIGNALED(status) && WTERMSIG(status) == t.signal
                                      : WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (ok) {
      ++passed;
      printf("usertests: %s: ok (%s)\n", label, desc);
    } else {
      ++failed;
      if (t.signal)
        printf("usertests: %s: FAILED (%s; expected signal %d)\n", label, desc, t.signal);
      else
        printf("usertests: %s: FAILED (%s)\n", label, desc);
    }
  }
  printf("usertests: %d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
