// threadtest: threads of one process on several harts.
// 1. N threads add to shared counters with atomic instructions (AMOs) and under a futex mutex;
//    both sums must be exact.
// 2. futex wait/wake between threads; malloc from all threads at once.
// 3. In a forked child: reader threads keep reading a region that another thread munmaps; the
//    readers must fault (the whole child dies of SIGSEGV) - a stale TLB entry on another hart
//    would let them read on. teachos counts the TLB shootdowns that this takes.
#include "ulib.h"

#define MAX_THREADS 16
#define ITERS 20000

static long nthreads;
static long atomic_counter;
static long locked_counter;
static Mutex lock = MUTEX_INIT;
static int start_flag;

static long adder(void* arg) {
  long id = (long)arg;
  // Start together, so the threads really contend.
  while (!atomic_load(&start_flag)) sched_yield();
  for (int i = 0; i < ITERS; ++i) {
    atomic_add(&atomic_counter, 1);
    mutex_lock(&lock);
    locked_counter += 2;  // a plain read-modify-write: only the mutex keeps it exact
    mutex_unlock(&lock);
  }
  if (gettid() == getpid()) return -1;  // only the main thread's tid equals the pid
  return id * 10;
}

static void test_counters(void) {
  Thread* t[MAX_THREADS];
  for (long i = 0; i < nthreads; ++i) {
    long err = 0;
    t[i] = thread_create(adder, (void*)i, &err);
    if (!t[i]) fail("thread_create %ld failed: %ld", i, err);
  }
  atomic_store(&start_flag, 1);
  for (long i = 0; i < nthreads; ++i)
    if (thread_join(t[i]) != i * 10) fail("thread %ld returned the wrong value", i);
  if (atomic_counter != nthreads * ITERS)
    fail("atomic counter %ld, expected %ld", atomic_counter, nthreads * ITERS);
  if (locked_counter != 2 * nthreads * ITERS)
    fail("mutex counter %ld, expected %ld", locked_counter, 2 * nthreads * ITERS);
  printf("threadtest: atomic and mutex-protected sums exact\n");
}

static int futex_word;
static int woken;

static long sleeper(void* arg) {
  (void)arg;
  while (atomic_load(&futex_word) == 0) futex(&futex_word, FUTEX_WAIT, 0, NULL);
  atomic_add(&woken, 1);
  return getpid();
}

static void test_futex(void) {
  // A wait with a stale value returns at once with EAGAIN.
  int word = 5;
  if (futex(&word, FUTEX_WAIT, 4, NULL) != -EAGAIN) fail("FUTEX_WAIT on a changed value");
  Thread* t[MAX_THREADS];
  for (long i = 0; i < nthreads; ++i)
    if (!(t[i] = thread_create(sleeper, NULL, NULL))) fail("thread_create failed");
  msleep(20);
  atomic_store(&futex_word, 1);
  futex(&futex_word, FUTEX_WAKE, 1 << 30, NULL);
  for (long i = 0; i < nthreads; ++i)
    if (thread_join(t[i]) != getpid()) fail("a thread saw another pid");
  if (woken != nthreads) fail("%d of %ld sleepers woke", woken, nthreads);
  printf("threadtest: futex wait/wake ok, threads share the pid\n");
}

static long allocator(void* arg) {
  long id = (long)arg;
  char* blocks[64];
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 64; ++i) {
      blocks[i] = malloc((size_t)(16 + (i * 37 + id) % 3000));
      if (!blocks[i]) return -1;
      blocks[i][0] = (char)(id + i);
    }
    for (int i = 0; i < 64; ++i) {
      if (blocks[i][0] != (char)(id + i)) return -2;
      free(blocks[i]);
    }
  }
  return 0;
}

static void test_malloc(void) {
  Thread* t[MAX_THREADS];
  for (long i = 0; i < nthreads; ++i)
    if (!(t[i] = thread_create(allocator, (void*)i, NULL))) fail("thread_create failed");
  for (long i = 0; i < nthreads; ++i)
    if (thread_join(t[i]) != 0) fail("malloc from thread %ld went wrong", i);
  printf("threadtest: malloc/free from all threads at once ok\n");
}

#define REGION_PAGES 16
static char* region;
static long readers_running;

static long reader(void* arg) {
  (void)arg;
  unsigned long sum = 0;
  atomic_add(&readers_running, 1);
  for (;;)
    for (unsigned long off = 0; off < REGION_PAGES * PAGE_SIZE; off += PAGE_SIZE)
      sum += *(volatile char*)(region + off);
  return (long)sum;
}

static long unmapper(void* arg) {
  (void)arg;
  while (atomic_load(&readers_running) < nthreads - 1) sched_yield();
  msleep(20);  // let the readers fill their TLBs
  if (munmap(region, REGION_PAGES * PAGE_SIZE) != 0) {
    printf("threadtest: FAIL: munmap failed\n");
    exit(1);
  }
  return 0;
}

static void munmap_under_readers(void* arg) {
  (void)arg;
  region = mmap(NULL, REGION_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
  if (mmap_failed(region)) exit(2);
  memset(region, 1, REGION_PAGES * PAGE_SIZE);
  for (long i = 0; i < nthreads - 1; ++i)
    if (!thread_create(reader, NULL, NULL)) exit(3);
  Thread* u = thread_create(unmapper, NULL, NULL);
  if (!u) exit(3);
  thread_join(u);
  // The readers should have faulted (killing the process) by now; give them a few seconds.
  msleep(5000);
  printf("threadtest: FAIL: readers kept reading an unmapped region for 5 s\n");
  exit(1);
}

int main(void) {
  nthreads = teachos_nharts();
  if (nthreads == -ENOSYS) nthreads = 4;  // not on teachos
  if (nthreads < 2) nthreads = 2;
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  test_counters();
  test_futex();
  test_malloc();
  long shootdowns_before = teachos_shootdowns();
  expect_killed("threadtest: readers of an unmapped region",
                run_in_child(munmap_under_readers, NULL), SIGSEGV);
  if (on_teachos()) {
    long shootdowns = teachos_shootdowns() - shootdowns_before;
    fprintf(2, "threadtest: %ld TLB shootdowns during the munmap test\n", shootdowns);
    if (teachos_nharts() > 1 && shootdowns <= 0)
      fail("munmap under readers on other harts caused no TLB shootdown");
    printf("threadtest: the munmap caused TLB shootdowns\n");
  } else {
    printf("threadtest: not on teachos: shootdown count not checked\n");
  }
  printf("threadtest: all ok\n");
  return 0;
}
