// hello: the smallest program; proves _start, write and exit work.
#include "ulib.h"

int main(int argc, char** argv, char** envp) {
  (void)envp;
  printf("hello from teachos user space: argc=%d argv[0]=%s\n", argc, ulib_progname);
  (void)argv;
  return 0;
}
