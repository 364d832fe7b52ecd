// thread.c: threads over clone + futex.
//
// A thread is a clone() that shares the address space (CLONE_VM) and everything else a POSIX
// thread shares; the flag set is the one qemu-riscv64 insists on for threads. Each thread gets
// its own mmap'd stack. Joining uses CLONE_CHILD_CLEARTID: when the thread exits, the kernel
// writes 0 to `tid` and futex-wakes it, so the joiner sleeps in FUTEX_WAIT until then.
#include "ulib.h"

#define THREAD_STACK (256 * 1024UL)

struct Thread {
  int tid;      // set by the kernel at clone (CLONE_PARENT_SETTID), cleared at exit
  long result;  // fn's return value
  ThreadFn fn;
  void* arg;
  char* stack;  // the mmap'd stack (THREAD_STACK bytes)
};

long ulib_clone_thread(unsigned long flags, void* stack_top, int* parent_tid, void* tls,
                       int* child_tid, long (*fn)(void*), void* arg);

// Runs on the new thread: stores the result where the joiner finds it.
static long thread_trampoline(void* p) {
  Thread* t = p;
  t->result = t->fn(t->arg);
  return 0;
}

Thread* thread_create(ThreadFn fn, void* arg, long* err) {
  // The Thread record lives at the top of its own stack mapping: one mmap per thread.
  char* stack =
      mmap(NULL, THREAD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mmap_failed(stack)) {
    if (err) *err = mmap_errno(stack);
    return NULL;
  }
  Thread* t = (Thread*)(stack + THREAD_STACK - sizeof(Thread));
  t->fn = fn;
  t->arg = arg;
  t->stack = stack;
  t->result = 0;
  t->tid = 0;
  char* top = (char*)((uintptr_t)t & ~15UL);
  unsigned long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                        CLONE_SYSVSEM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
  long r = ulib_clone_thread(flags, top, &t->tid, NULL, &t->tid, thread_trampoline, t);
  if (r < 0) {
    munmap(stack, THREAD_STACK);
    if (err) *err = r;
    return NULL;
  }
  return t;
}

long thread_join(Thread* t) {
  for (;;) {
    int tid = atomic_load(&t->tid);
    if (tid == 0) break;
    // Sleeps only while tid is still the value we saw: no lost wake-up.
    futex(&t->tid, FUTEX_WAIT, tid, NULL);
  }
  long result = t->result;
  munmap(t->stack, THREAD_STACK);
  return result;
}

// The classic three-state futex mutex (0 free, 1 locked, 2 locked and maybe waiters): an
// uncontended lock/unlock is one atomic each and never enters the kernel.
void mutex_lock(Mutex* m) {
  int expected = 0;
  if (atomic_cas(&m->state, &expected, 1)) return;
  if (expected != 2) expected = atomic_xchg(&m->state, 2);
  while (expected != 0) {
    futex(&m->state, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 2, NULL);
    expected = atomic_xchg(&m->state, 2);
  }
}

void mutex_unlock(Mutex* m) {
  if (atomic_xchg(&m->state, 0) == 2) futex(&m->state, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL);
}
