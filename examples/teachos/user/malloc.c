// malloc.c: a small allocator, chosen for being easy to read rather than frugal.
// - Small blocks (up to 32 KiB) come in power-of-two size classes. Each class has a free list;
//   an empty list is refilled by moving the break (sbrk). Freed blocks go back to their
//   class's list and are never returned to the kernel.
// - Large blocks get their own anonymous mmap and are munmap'd by free: this exercises the
//   kernel's mmap path and gives memory back.
// Every block starts with a 16-byte header, so user pointers stay 16-byte aligned.
// One mutex protects the lists: threads of a process share them.
#include "ulib.h"

#define MIN_SHIFT 4   // 16 bytes
#define MAX_SHIFT 15  // 32 KiB
#define NCLASSES (MAX_SHIFT - MIN_SHIFT + 1)
#define LARGE_CLASS 0xff

struct Header {
  size_t size;   // usable bytes: the class size, or the mapping's size minus the header
  size_t klass;  // size class index, or LARGE_CLASS for a block with its own mapping
};

struct FreeBlock {
  struct FreeBlock* next;
};

static struct FreeBlock* free_lists[NCLASSES];
static Mutex heap_lock = MUTEX_INIT;

static int class_of(size_t n) {
  int k = 0;
  while (((size_t)1 << (k + MIN_SHIFT)) < n) ++k;
  return k;
}

void* malloc(size_t n) {
  if (n == 0) n = 1;
  if (n > ((size_t)1 << MAX_SHIFT)) {
    if (n > ((size_t)1 << 46)) return NULL;  // would overflow the rounding below
    size_t total = (n + sizeof(struct Header) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    void* p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mmap_failed(p)) return NULL;
    struct Header* h = p;
    h->size = total - sizeof(struct Header);
    h->klass = LARGE_CLASS;
    return h + 1;
  }
  int k = class_of(n);
  size_t block = sizeof(struct Header) + ((size_t)1 << (k + MIN_SHIFT));
  mutex_lock(&heap_lock);
  struct FreeBlock* b = free_lists[k];
  if (b) {
    free_lists[k] = b->next;
  } else {
    b = sbrk((long)block);
    if (b == (void*)-1) {
      mutex_unlock(&heap_lock);
      return NULL;
    }
  }
  mutex_unlock(&heap_lock);
  struct Header* h = (struct Header*)b;
  h->size = (size_t)1 << (k + MIN_SHIFT);
  h->klass = (size_t)k;
  return h + 1;
}

void free(void* p) {
  if (!p) return;
  struct Header* h = (struct Header*)p - 1;
  if (h->klass == LARGE_CLASS) {
    munmap(h, h->size + sizeof(struct Header));
    return;
  }
  struct FreeBlock* b = (struct FreeBlock*)h;
  mutex_lock(&heap_lock);
  b->next = free_lists[h->klass];
  free_lists[h->klass] = b;
  mutex_unlock(&heap_lock);
}

void* calloc(size_t n, size_t size) {
  if (size && n > (size_t)-1 / size) return NULL;
  void* p = malloc(n * size);
  // Reused small blocks hold old data; fresh pages from the kernel are zero, but be uniform.
  if (p) memset(p, 0, n * size);
  return p;
}

void* realloc(void* p, size_t n) {
  if (!p) return malloc(n);
  struct Header* h = (struct Header*)p - 1;
  if (n <= h->size) return p;
  void* q = malloc(n);
  if (!q) return NULL;
  memcpy(q, p, h->size);
  free(p);
  return q;
}
