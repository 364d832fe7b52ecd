// printf.c: formatted output. Supports %d %i %u %x %X %p %s %c %%, the l/ll/z length
// modifiers, a field width (or *), zero padding ('0') and left adjustment ('-').
// printf formats into a stack buffer and writes it with one write(), so lines from different
// processes do not interleave in the middle and nothing stays buffered across fork().
#include "ulib.h"

struct Out {
  char* buf;
  size_t size;  // capacity including the final NUL
  size_t len;   // characters produced so far (may exceed size: snprintf's return value)
};

static void put(struct Out* o, char c) {
  if (o->len + 1 < o->size) o->buf[o->len] = c;
  o->len++;
}

static void pad(struct Out* o, char c, int n) {
  while (n-- > 0) put(o, c);
}

// Emits `digits` (already converted, most significant first) with sign and padding.
static void emit_number(struct Out* o, const char* digits, int ndigits, int negative, int width,
                        int zero, int left, const char* prefix) {
  int plen = prefix ? (int)strlen(prefix) : 0;
  int total = ndigits + (negative ? 1 : 0) + plen;
  if (!left && !zero) pad(o, ' ', width - total);
  if (negative) put(o, '-');
  for (int i = 0; i < plen; ++i) put(o, prefix[i]);
  if (!left && zero) pad(o, '0', width - total);
  for (int i = 0; i < ndigits; ++i) put(o, digits[i]);
  if (left) pad(o, ' ', width - total);
}

static int convert(unsigned long v, unsigned base, int upper, char* out) {
  char tmp[24];
  int n = 0;
  const char* set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  do {
    tmp[n++] = set[v % base];
    v /= base;
  } while (v);
  for (int i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

int vsnprintf(char* buf, size_t size, const char* fmt, va_list ap) {
  struct Out o = {buf, size, 0};
  for (const char* f = fmt; *f; ++f) {
    if (*f != '%') {
      put(&o, *f);
      continue;
    }
    ++f;
    int left = 0, zero = 0, width = 0, lng = 0;
    for (;; ++f) {
      if (*f == '-')
        left = 1;
      else if (*f == '0')
        zero = 1;
      else
        break;
    }
    if (*f == '*') {
      width = va_arg(ap, int);
      if (width < 0) left = 1, width = -width;
      ++f;
    } else {
      while (*f >= '0' && *f <= '9') width = width * 10 + (*f++ - '0');
    }
    if (left) zero = 0;
    while (*f == 'l' || *f == 'z') lng = 1, ++f;  // long, long long and size_t are all 64-bit
    char digits[24];
    int n;
    switch (*f) {
      case 'd':
      case 'i': {
        long v = lng ? va_arg(ap, long) : va_arg(ap, int);
        unsigned long mag = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
        n = convert(mag, 10, 0, digits);
        emit_number(&o, digits, n, v < 0, width, zero, left, NULL);
        break;
      }
      case 'u':
      case 'x':
      case 'X': {
        unsigned long v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
        n = convert(v, *f == 'u' ? 10 : 16, *f == 'X', digits);
        emit_number(&o, digits, n, 0, width, zero, left, NULL);
        break;
      }
      case 'p': {
        unsigned long v = (unsigned long)va_arg(ap, void*);
        n = convert(v, 16, 0, digits);
        emit_number(&o, digits, n, 0, width, zero, left, "0x");
        break;
      }
      case 's': {
        const char* s = va_arg(ap, const char*);
        if (!s) s = "(null)";
        int len = (int)strlen(s);
        if (!left) pad(&o, ' ', width - len);
        for (int i = 0; i < len; ++i) put(&o, s[i]);
        if (left) pad(&o, ' ', width - len);
        break;
      }
      case 'c': {
        if (!left) pad(&o, ' ', width - 1);
        put(&o, (char)va_arg(ap, int));
        if (left) pad(&o, ' ', width - 1);
        break;
      }
      case '%': put(&o, '%'); break;
      case '\0':
        --f;  // a lone '%' at the end: stop at the NUL
        break;
      default:  // unknown conversion: print it as it was written
        put(&o, '%');
        put(&o, *f);
        break;
    }
  }
  if (size > 0) buf[o.len < size ? o.len : size - 1] = 0;
  return (int)o.len;
}

int snprintf(char* buf, size_t size, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  return n;
}

// Writes all of buf (write may be partial on pipes).
static void write_all(int fd, const char* buf, size_t n) {
  while (n > 0) {
    long w = write(fd, buf, n);
    if (w <= 0) return;
    buf += w;
    n -= (size_t)w;
  }
}

static int vfprintf_fd(int fd, const char* fmt, va_list ap) {
  char buf[512];
  va_list copy;
  __builtin_va_copy(copy, ap);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  if (n < (int)sizeof buf) {
    write_all(fd, buf, (size_t)n);
  } else {
    // Too long for the stack buffer: format again into the heap.
    char* big = malloc((size_t)n + 1);
    if (big) {
      vsnprintf(big, (size_t)n + 1, fmt, copy);
      write_all(fd, big, (size_t)n);
      free(big);
    } else {
      write_all(fd, buf, sizeof buf - 1);
    }
  }
  va_end(copy);
  return n;
}

int printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vfprintf_fd(1, fmt, ap);
  va_end(ap);
  return n;
}

int fprintf(int fd, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vfprintf_fd(fd, fmt, ap);
  va_end(ap);
  return n;
}

int puts(const char* s) {
  size_t n = strlen(s);
  write_all(1, s, n);
  write_all(1, "\n", 1);
  return (int)n + 1;
}

void fail(const char* fmt, ...) {
  char buf[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  printf("%s: FAIL: %s\n", ulib_progname, buf);
  exit(1);
}

static const char* signame(int sig) {
  switch (sig) {
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGBUS: return "SIGBUS";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    default: return "?";
  }
}

void describe_status(char* buf, size_t size, int status) {
  if (WIFEXITED(status))
    snprintf(buf, size, "exited %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status), signame(WTERMSIG(status)));
  else
    snprintf(buf, size, "status 0x%x", status);
}
