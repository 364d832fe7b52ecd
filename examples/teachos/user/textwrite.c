// textwrite: the program's code is mapped read+execute; a store into it must kill the
// process (here a forked child). Reading the code is allowed.
#include "ulib.h"

static int victim(int x) { return x * 3 + 1; }

static void write_code(void* arg) {
  (void)arg;
  volatile unsigned int* code = (volatile unsigned int*)(uintptr_t)&victim;
  unsigned int insn = *code;  // reading our own code is fine
  *code = insn;               // writing it is not
  printf("textwrite: FAIL: the store into the text segment did not fault\n");
}

// `textwrite direct`: the process itself dies (usertests expects SIGSEGV from this run).
int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "direct") == 0) {
    printf("textwrite: storing into the text segment of this very process\n");
    write_code(NULL);
    return 1;
  }
  volatile unsigned int* code = (volatile unsigned int*)(uintptr_t)&victim;
  if (*code == 0) fail("the first instruction of victim() reads as 0");
  printf("textwrite: reading own code works\n");
  expect_killed("textwrite: store into text", run_in_child(write_code, NULL), SIGSEGV);
  if (victim(2) != 7) fail("victim() changed");
  printf("textwrite: code unchanged\n");
  return 0;
}
