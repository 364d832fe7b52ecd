// exec's first half: reading an ELF64 RISC-V executable, and the initial user stack Linux
// builds for it.
//
// Parsing is pure (bytes in, a plan out) so that every check can be tested without a
// machine, and so that a malformed file is refused before the old image is thrown away: exec
// either succeeds completely or leaves the caller running, as in xv6's exec().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace teachos {

// Where user space ends for teachos processes: everything an ELF asks for must fit below it.
inline constexpr std::uint64_t kUserTop = 0x40'0000'0000ULL;  // 256 GiB (Sv39's lower half)

// One PT_LOAD segment: map [vaddr, vaddr + memsz) with `prot`, the first `filesz` bytes
// coming from the file at `offset`, the rest zero (bss).
struct ElfSegment {
  std::uint64_t vaddr = 0;
  std::uint64_t memsz = 0;
  std::uint64_t offset = 0;
  std::uint64_t filesz = 0;
  unsigned prot = 0;  // PROT_READ 1 | PROT_WRITE 2 | PROT_EXEC 4
};

struct ElfImage {
  std::uint64_t entry = 0;
  std::uint64_t phdr_vaddr = 0;  // where the program headers are visible (AT_PHDR), or 0
  std::uint64_t phnum = 0;
  std::uint64_t highest = 0;  // end of the highest segment: brk starts at its page end
  std::vector<ElfSegment> segments;
};

// The outcome of elf_parse: an image, or the errno exec returns (ENOEXEC: not an executable we
// can run at all; EINVAL: an executable whose layout is impossible).
struct ElfResult {
  int error = 0;    // 0 on success
  std::string why;  // for the trace / messages
  ElfImage image;
};

// Checks and reads `file`. Refuses (ENOEXEC): short or truncated files, wrong magic, class,
// byte order, machine (not RISC-V) or type (not ET_EXEC), dynamic executables (PT_INTERP), no
// PT_LOAD, an entry point outside executable memory. Refuses (EINVAL): filesz > memsz, segment
// file data beyond the file, vaddr/offset not congruent modulo the page size, a segment that
// wraps or ends above kUserTop (huge p_memsz included), segments that share a page.
ElfResult elf_parse(std::span<const std::byte> file);

// The initial stack as Linux lays it out for a static executable (fs/binfmt_elf.c,
// create_elf_tables): from `stack_top` down, the strings (argv, envp, the executable name), 16
// random bytes for AT_RANDOM, then (16-byte aligned) argc, argv[], NULL, envp[], NULL and the
// auxiliary vector (AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_ENTRY, AT_RANDOM, AT_NULL).
struct InitialStack {
  std::uint64_t sp = 0;          // user sp: points at argc
  std::vector<std::byte> bytes;  // the memory [sp, stack_top)
};
// Fails (empty bytes, sp 0) when the arguments take more than `max_bytes` (exec returns E2BIG).
InitialStack build_initial_stack(std::uint64_t stack_top, const std::vector<std::string>& argv,
                                 const std::vector<std::string>& envp, const ElfImage& image,
                                 std::uint64_t random_seed, std::size_t max_bytes);

}  // namespace teachos
