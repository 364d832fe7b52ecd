// exectest: execve passes argv and envp intact, including a large argument list (1000
// arguments, about 100 KiB), replaces the calling process (same pid, fresh memory), and
// rejects bad requests.
//   exectest              the test (forks a child that execs "exectest child ...")
//   exectest child ...    checks the arguments it got
//   exectest final PID    the parent's own image after it exec'd itself
#include "ulib.h"

#define NARGS 1000
#define NENV 40

// Argument i (1-based after "exectest child") as the parent builds it: its length varies
// from 80 to 119 characters and its content depends on i, so a lost, swapped or truncated
// argument is noticed.
static void make_arg(char* buf, int i) {
  int len = 80 + i % 40;
  int n = snprintf(buf, 16, "a%04d:", i);
  for (int k = n; k < len; ++k) buf[k] = (char)('a' + (i * 7 + k) % 26);
  buf[len] = 0;
}

static void make_env(char* buf, int i) {
  snprintf(buf, 64, "TEACHOS_VAR%02d=value-%d-%s", i, i * i, i % 2 ? "odd" : "even");
}

// A global with an initial value: the new image must have it again, whatever the old one
// did to it.
static int image_marker = 1234;

static int child_mode(int argc, char** argv, char** envp) {
  char buf[160];
  if (argc != NARGS + 2) fail("child: argc is %d, expected %d", argc, NARGS + 2);
  if (strcmp(argv[0], "exectest") != 0) fail("child: argv[0] is '%s'", argv[0]);
  long bytes = 0;
  for (int i = 1; i <= NARGS; ++i) {
    make_arg(buf, i);
    if (strcmp(argv[i + 1], buf) != 0) fail("child: argument %d is wrong", i);
    bytes += (long)strlen(buf) + 1;
  }
  if (argv[argc] != NULL) fail("child: argv is not NULL-terminated");
  int nenv = 0;
  while (envp[nenv]) ++nenv;
  if (nenv != NENV) fail("child: %d environment strings, expected %d", nenv, NENV);
  // Every string must arrive once; the order is not checked because qemu-riscv64 hands the
  // environment over in reverse.
  for (int i = 0; i < NENV; ++i) {
    make_env(buf, i);
    int found = 0;
    for (int k = 0; k < nenv; ++k) found += strcmp(envp[k], buf) == 0;
    if (found != 1) fail("child: environment string '%s' arrived %d times", buf, found);
  }
  if (image_marker != 1234) fail("child: the new image's data is not fresh");
  printf("exectest: child got %d arguments (%ld bytes) and %d environment strings intact\n", argc,
         bytes, nenv);
  return 0;
}

static int final_mode(int argc, char** argv) {
  if (argc != 3) fail("final: argc %d", argc);
  if (atol(argv[2]) != getpid()) fail("final: the pid changed across execve");
  if (image_marker != 1234) fail("final: the new image's data is not fresh");
  printf("exectest: exec replaced the process image, pid unchanged\n");
  printf("exectest: all ok\n");
  return 0;
}

int main(int argc, char** argv, char** envp) {
  if (argc >= 2 && strcmp(argv[1], "child") == 0) return child_mode(argc, argv, envp);
  if (argc >= 2 && strcmp(argv[1], "final") == 0) return final_mode(argc, argv);

  // Bad requests fail and leave the caller running.
  char* none[] = {"nothing", NULL};
  long r = execve("no-such-program", none, none);
  if (r != -ENOENT) fail("execve of a missing program returned %ld, expected -ENOENT", r);
  printf("exectest: missing program: ENOENT\n");

  // The big argument list lives on the heap.
  char** args = malloc(sizeof(char*) * (NARGS + 3));
  char** env = malloc(sizeof(char*) * (NENV + 1));
  if (!args || !env) fail("malloc failed");
  args[0] = "exectest";
  args[1] = "child";
  for (int i = 1; i <= NARGS; ++i) {
    args[i + 1] = malloc(128);
    if (!args[i + 1]) fail("malloc failed");
    make_arg(args[i + 1], i);
  }
  args[NARGS + 2] = NULL;
  for (int i = 0; i < NENV; ++i) {
    env[i] = malloc(64);
    if (!env[i]) fail("malloc failed");
    make_env(env[i], i);
  }
  env[NENV] = NULL;

  pid_t pid = fork();
  if (pid < 0) fail("fork failed: %d", pid);
  if (pid == 0) {
    r = execve("exectest", args, env);
    // Only a failed execve returns. ENOEXEC: this host cannot run RISC-V programs from
    // execve (qemu-riscv64 without binfmt_misc); tell the parent to skip.
    exit(r == -ENOEXEC ? 77 : 2);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) fail("wait4 failed");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    fprintf(2,
            "exectest: execve answered ENOEXEC: this host cannot exec RISC-V programs "
            "(no binfmt_misc for qemu-riscv64); skipped\n");
    return 77;
  }
  expect_exit0("exectest: exec'd child", status);

  // Now exec in place: the same process continues as "exectest final <pid>".
  image_marker = 99;
  char pidbuf[24];
  snprintf(pidbuf, sizeof pidbuf, "%d", getpid());
  char* fargs[] = {"exectest", "final", pidbuf, NULL};
  char* fenv[] = {NULL};
  r = execve("exectest", fargs, fenv);
  fail("execve of exectest itself returned %ld", r);
}
