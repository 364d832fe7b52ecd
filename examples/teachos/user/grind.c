// grind: several processes issue random system calls with random arguments - wild pointers,
// huge lengths, bad flags - for a while (`grind [seconds]`, default 2). The kernel must answer
// every one with a result or an error, never crash, leak or hang. Calls that could hurt the
// grinder itself (exit, writes over its own memory, munmap of its code) are aimed only at a
// scratch arena or at addresses that cannot be valid; truly wild things happen in short-lived
// children whose death is expected.
// stdout: one summary line, the same whatever the calls returned (the counts go to stderr).
#include "ulib.h"

#define WORKERS 4
#define ARENA_PAGES 64

static char* arena;  // our own scratch mappings live here (MAP_FIXED targets)
static char* readonly_page;
static char* initial_brk;

// A pointer that can never be valid user memory.
static uintptr_t bad_pointer(void) {
  switch (rand_range(5)) {
    case 0: return 0;
    case 1: return rand_range(PAGE_SIZE);                         // the null page
    case 2: return 0x0000800000000000UL + rand_range(1UL << 40);  // kernel half
    case 3: return 0xffffffc000000000UL + rand_range(1UL << 30);  // high kernel
    default: return ~0UL - rand_range(PAGE_SIZE);                 // wraps
  }
}

// A pointer that is never valid user memory to write into, or points into the arena (a
// completely random 64-bit value practically never hits anything mapped).
static uintptr_t wild_pointer(void) {
  switch (rand_range(10)) {
    case 0: return 0;
    case 1: return rand_range(PAGE_SIZE);                             // the null page
    case 2: return 0x0000800000000000UL + rand_range(1UL << 40);      // kernel half
    case 3: return 0xffffffc000000000UL + rand_range(1UL << 30);      // high kernel
    case 4: return ~0UL - rand_range(PAGE_SIZE);                      // wraps
    case 5: return (uintptr_t)readonly_page + rand_range(PAGE_SIZE);  // read-only
    case 6: return rand64();                                          // anything at all
    case 7: return (uintptr_t)readonly_page - 8;                      // straddles into ro
    default: return (uintptr_t)arena + rand_range(ARENA_PAGES * PAGE_SIZE);
  }
}

// A pointer for calls that only read user memory: may also point at our own data.
static uintptr_t any_pointer(void) {
  static long local;
  switch (rand_range(4)) {
    case 0: return (uintptr_t)&local;
    case 1: return (uintptr_t)initial_brk - 8 - rand_range(64);
    default: return wild_pointer();
  }
}

static unsigned long wild_length(void) {
  switch (rand_range(6)) {
    case 0: return 0;
    case 1: return rand_range(64);
    case 2: return rand_range(3 * PAGE_SIZE);
    case 3: return ~0UL - rand_range(16);
    case 4: return 1UL << rand_range(64);
    default: return rand64();
  }
}

static uintptr_t arena_address(void) {
  uintptr_t a = (uintptr_t)arena + rand_range(ARENA_PAGES) * PAGE_SIZE;
  if (rand_range(8) == 0) a += rand_range(PAGE_SIZE);  // unaligned: EINVAL
  return a;
}

static unsigned long arena_length(uintptr_t at) {
  unsigned long room = (uintptr_t)arena + ARENA_PAGES * PAGE_SIZE - (at & ~(PAGE_SIZE - 1));
  // Never beyond the arena: a long munmap or mprotect from here would take away the stack.
  return rand_range(room + 1);
}

static int teachos;  // on teachos (not under qemu-riscv64)

// A child that does whatever it likes, including faulting and exiting with a random code.
static void wild_child(void) {
  for (int i = 0; i < 50; ++i) {
    switch (rand_range(6)) {
      case 0: *(volatile char*)wild_pointer() = 1; break;  // may fault: that ends the child
      case 1: exit((int)rand_range(256));
      case 2: write(1, (void*)0x0000800000000000UL, 10); break;
      case 3:
        // Unmapping its own code or stack hangs or crashes qemu-riscv64 (7.2) itself, so
        // only teachos gets this one.
        if (teachos)
          munmap((void*)(rand_range(1UL << 38) & ~(PAGE_SIZE - 1)), rand_range(1UL << 32));
        break;
      case 4: brk((void*)rand64()); break;
      default: sched_yield(); break;
    }
  }
  exit(0);
}

static long calls, errors;

static void one_call(void) {
  long r = 0;
  switch (rand_range(22)) {
    case 0:
      r = write(1, (void*)(0x0000800000000000UL + rand_range(1UL << 30)), wild_length());
      break;
    case 1: r = write((int)(3 + rand_range(1000)), (void*)any_pointer(), wild_length()); break;
    case 2: r = write(2, (void*)bad_pointer(), wild_length()); break;  // nothing reaches stderr
    case 3: r = read(0, (void*)wild_pointer(), rand_range(2) ? wild_length() : 0); break;
    case 4: r = read((int)rand64(), (void*)wild_pointer(), wild_length()); break;
    case 5: r = clock_gettime((int)rand_range(12) - 2, (struct timespec*)wild_pointer()); break;
    case 6: {
      // qemu-riscv64 (7.2) trips over its own assertion (cpu == current_cpu) when SIGCHLD
      // from a wild child interrupts nanosleep: only teachos gets this one.
      if (!teachos) break;
      struct timespec ts = {0, (long)rand_range(2000)};
      if (rand_range(4) == 0) ts.tv_nsec = (long)rand64();  // EINVAL
      // Only ever our own request or an invalid pointer: memory that happens to hold a
      // large number would put the worker to sleep for good.
      r = nanosleep(rand_range(4) ? &ts : (struct timespec*)bad_pointer(), NULL);
      break;
    }
    case 7: {
      int flags = (int)rand_range(64);
      if (rand_range(3)) flags = (flags & ~MAP_FIXED) | MAP_ANONYMOUS;
      uintptr_t at = rand_range(2) ? arena_address() : wild_pointer() & ~(PAGE_SIZE - 1);
      if ((flags & MAP_FIXED) &&
          (at < (uintptr_t)arena || at >= (uintptr_t)arena + ARENA_PAGES * PAGE_SIZE))
        flags &= ~MAP_FIXED;  // a fixed mapping only ever lands in the arena
      unsigned long len = (flags & MAP_FIXED) ? arena_length(at) : wild_length();
      // qemu-riscv64 walks every page of a mapping: a 2^46-byte one takes it hours.
      if (!teachos && len > (1UL << 32)) len = rand_range(1UL << 32);
      if ((flags & MAP_FIXED) && at + len > (uintptr_t)arena + ARENA_PAGES * PAGE_SIZE)
        len = (uintptr_t)arena + ARENA_PAGES * PAGE_SIZE - at;
      void* p = mmap((void*)at, len, (int)rand_range(16), flags, (int)rand_range(3) - 1,
                     (long)rand_range(2) * (long)PAGE_SIZE);
      r = (long)p;
      // Mappings outside the arena are given back at once (when it is safe to say where).
      if (!mmap_failed(p) && !(flags & MAP_FIXED) && len < (1UL << 40)) munmap(p, len);
      break;
    }
    case 8: {
      uintptr_t at = arena_address();
      r = munmap((void*)at, arena_length(at));
      break;
    }
    case 9: r = munmap((void*)(wild_pointer() | 0x800000000000UL), wild_length()); break;
    case 10: {
      uintptr_t at = arena_address();
      r = mprotect((void*)at, arena_length(at), (int)rand_range(16));
      break;
    }
    case 11: r = mprotect((void*)bad_pointer(), wild_length(), (int)rand64()); break;
    case 12: {
      // Below the start or in the kernel half: refused (brk returns the current break).
      uintptr_t v = rand_range(2) ? rand_range((uintptr_t)initial_brk)
                                  : 0x800000000000UL + rand_range(1UL << 40);
      r = brk((void*)v);
      break;
    }
    case 13: {
      int word = (int)rand_range(3);
      int* addr = rand_range(2) ? &word : (int*)bad_pointer();
      // WAIT or WAKE (private or not), or an operation number no kernel knows. A wait only
      // ever sees a value that does not match, or an invalid address: it must not sleep.
      int op = (int)(rand_range(2) | (rand_range(2) << 7));
      if (rand_range(4) == 0) op = 100 + (int)rand_range(1000);
      r = futex(addr, op, word + 1, NULL);
      break;
    }
    case 14:
      r = wait4((pid_t)rand64(), (int*)wild_pointer(), WNOHANG | (int)rand_range(8), 0);
      break;
    case 15:
      r = execve((char*)wild_pointer(), (char**)wild_pointer(), (char**)wild_pointer());
      break;
    case 16:
      r = syscall6(600 + (long)rand_range(400), (long)rand64(), (long)rand64(), 0, 0, 0, 0);
      break;
    case 17: r = teachos_vtop((void*)rand64()); break;
    case 18: r = getpid() + getppid() + gettid(); break;
    case 19: r = sched_yield(); break;
    case 20: r = set_tid_address((int*)wild_pointer()); break;
    default:
      if (rand_range(20) == 0) {
        pid_t pid = fork();
        if (pid == 0) wild_child();
        if (pid > 0) {
          int status;
          waitpid(pid, &status, 0);
        }
        r = pid;
      }
      break;
  }
  ++calls;
  if (r < 0 && r >= -4095) ++errors;
}

static void worker(int id, long seconds) {
  srand64(0x1234567UL * (unsigned long)(id + 1));
  teachos = on_teachos();
  arena = mmap(NULL, ARENA_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
  readonly_page = mmap(NULL, PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(arena) || mmap_failed(readonly_page)) exit(10);
  long end = now_ns() + seconds * 1000000000L;
  while (now_ns() < end)
    for (int i = 0; i < 100; ++i) one_call();
  fprintf(2, "grind: worker %d: %ld calls, %ld errors\n", id, calls, errors);
  exit(0);
}

int main(int argc, char** argv) {
  long seconds = argc > 1 ? atol(argv[1]) : 2;
  if (seconds < 1) fail("seconds must be at least 1");
  initial_brk = sbrk(0);
  pid_t pids[WORKERS];
  for (int i = 0; i < WORKERS; ++i) {
    pids[i] = fork();
    if (pids[i] < 0) fail("fork of worker %d failed: %d", i, pids[i]);
    if (pids[i] == 0) worker(i, seconds);
  }
  int bad = 0;
  for (int i = 0; i < WORKERS; ++i) {
    int status;
    if (waitpid(pids[i], &status, 0) != pids[i]) fail("wait4 for worker %d failed", i);
    if (status != 0) {
      char desc[64];
      describe_status(desc, sizeof desc, status);
      printf("grind: worker %d %s\n", i, desc);
      bad = 1;
    }
  }
  if (bad) fail("a worker did not survive");
  printf("grind: %d workers survived random system calls\n", WORKERS);
  return 0;
}
