// System calls: the dispatcher, and the only way the kernel touches user memory.
//
// copyin/copyout/copyinstr (xv6's names) go through vmspace::VmReader/VmWriter<Fallible> on
// the caller's address space, which is active on the calling hart. A bad pointer can therefore
// never crash the kernel or read kernel memory: the library refuses kernel addresses and
// wrapping ranges outright, and an unmapped or read-only page makes the copy call our page-fault
// routine (Vm::fault), which either maps the page (a lazy or copy-on-write page the program may
// legitimately hand to the kernel) or says no, and the system call returns -EFAULT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "proc.hpp"
#include "trap.hpp"

namespace teachos {

// 0 on success, -EFAULT if any byte could not be copied.
int copyin(thread* t, void* dst, std::uint64_t usrc, std::size_t n);
int copyout(thread* t, std::uint64_t udst, const void* src, std::size_t n);
int copyout_u32(thread* t, std::uint64_t udst, std::uint32_t v);
// A NUL-terminated string of at most `max` bytes; nullopt on a fault or if it is longer.
std::optional<std::string> copyinstr(thread* t, std::uint64_t usrc, std::size_t max);

// read(0) reads this host fd (--input FILE; stdin by default).
void syscall_set_input(int fd);

// Runs the system call in t's a7 with arguments a0..a5.
Next syscall(thread* t);

}  // namespace teachos
