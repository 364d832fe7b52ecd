// crt.c: what happens between the kernel starting the program and main().
#include "ulib.h"

int main(int argc, char** argv, char** envp);

const char* ulib_progname = "?";

// Called by _start (start.S) with the values it found on the initial stack.
__attribute__((noreturn)) void ulib_start(int argc, char** argv, char** envp) {
  if (argc > 0 && argv[0]) {
    // Keep only the last path component, so messages read the same however we were started.
    const char* p = argv[0];
    for (const char* s = argv[0]; *s; ++s)
      if (*s == '/') p = s + 1;
    ulib_progname = p;
  }
  exit(main(argc, argv, envp));
}
