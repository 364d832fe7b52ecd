// bench_user: the user side of teachos-bench, freestanding (no library: it only needs a few
// system calls). Prints one number to stdout: nanoseconds per iteration, measured inside the
// guest with clock_gettime(CLOCK_MONOTONIC).
//
//   bench_user fork MIB N      N times: fork a process with MIB touched heap; child exits; wait
//   bench_user cowall MIB N    the same, but the child writes every page before exiting
//   bench_user procs PATH WORK 4 children exec PATH WORK at once; wait for all (N = 1)
typedef unsigned long u64;

static long sys(long n, long a, long b, long c, long d, long e) {
  register long a0 __asm__("a0") = a;
  register long a1 __asm__("a1") = b;
  register long a2 __asm__("a2") = c;
  register long a3 __asm__("a3") = d;
  register long a4 __asm__("a4") = e;
  register long a7 __asm__("a7") = n;
  __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a7) : "memory");
  return a0;
}

__attribute__((noreturn)) static void exit_group(int code) {
  for (;;) sys(94, code, 0, 0, 0, 0);
}
static long fork(void) { return sys(220, 17, 0, 0, 0, 0); }
static long wait_any(void) { return sys(260, -1, 0, 0, 0, 0); }
static u64 now_ns(void) {
  long ts[2];
  sys(113, 1, (long)ts, 0, 0, 0);
  return (u64)ts[0] * 1000000000UL + (u64)ts[1];
}
static u64 parse(const char* s) {
  u64 v = 0;
  while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0');
  return v;
}
static int streq(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}
static void print_u64(u64 v) {
  char buf[24];
  int i = 23;
  buf[i] = '\n';
  do buf[--i] = (char)('0' + v % 10); while ((v /= 10) != 0);
  sys(64, 1, (long)(buf + i), 24 - i, 0, 0);
}

__attribute__((used, noreturn)) void main2(long argc, char** argv);
void main2(long argc, char** argv) {
  if (argc < 4) exit_group(2);
  const u64 arg2 = parse(argv[3]);
  if (streq(argv[1], "procs")) {
    char* cargv[] = {argv[2], argv[3], 0};
    char* cenv[] = {0};
    u64 t0 = now_ns();
    for (int i = 0; i < 4; ++i) {
      if (fork() == 0) {
        sys(221, (long)argv[2], (long)cargv, (long)cenv, 0, 0);
        exit_group(127);
      }
    }
    for (int i = 0; i < 4; ++i) wait_any();
    print_u64(now_ns() - t0);
    exit_group(0);
  }
  const int cowall = streq(argv[1], "cowall");
  const u64 bytes = parse(argv[2]) << 20, n = arg2;
  char* heap = (char*)sys(214, 0, 0, 0, 0, 0);
  if ((char*)sys(214, (long)(heap + bytes), 0, 0, 0, 0) != heap + bytes) exit_group(3);
  for (u64 off = 0; off < bytes; off += 4096) heap[off] = 1;
  u64 t0 = now_ns();
  for (u64 i = 0; i < n; ++i) {
    if (fork() == 0) {
      if (cowall)
        for (u64 off = 0; off < bytes; off += 4096) heap[off] = 2;
      exit_group(0);
    }
    wait_any();
  }
  print_u64((now_ns() - t0) / n);
  exit_group(0);
}

// The initial stack (Linux layout): argc, then argv.
__attribute__((naked, noreturn)) void _start(void) {
  __asm__ volatile("ld a0, 0(sp)\n addi a1, sp, 8\n andi sp, sp, -16\n call main2\n");
}
