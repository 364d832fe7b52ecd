// ELF64 parsing and the Linux initial stack (see elf.hpp).
#include "elf.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

namespace teachos {

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint16_t kEmRiscv = 243;
constexpr std::uint16_t kEtExec = 2;
constexpr std::uint32_t kPtLoad = 1, kPtInterp = 3, kPtPhdr = 6;
constexpr std::uint32_t kPfX = 1, kPfW = 2, kPfR = 4;
constexpr std::size_t kEhdrSize = 64, kPhdrSize = 56;
constexpr std::size_t kMaxPhnum = 64;

// Little-endian field readers: the file is untrusted bytes, never cast to a struct.
std::uint64_t rd(std::span<const std::byte> f, std::size_t off, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i)
    v |= std::uint64_t(std::to_integer<std::uint8_t>(f[off + i])) << (8 * i);
  return v;
}

ElfResult fail(int error, std::string why) {
  ElfResult r;
  r.error = error;
  r.why = std::move(why);
  return r;
}

}  // namespace

ElfResult elf_parse(std::span<const std::byte> f) {
  if (f.size() < kEhdrSize) return fail(ENOEXEC, "shorter than an ELF header");
  static constexpr unsigned char kMagic[4] = {0x7f, 'E', 'L', 'F'};
  if (std::memcmp(f.data(), kMagic, 4) != 0) return fail(ENOEXEC, "not an ELF file");
  if (rd(f, 4, 1) != 2) return fail(ENOEXEC, "not ELF64");
  if (rd(f, 5, 1) != 1) return fail(ENOEXEC, "not little-endian");
  if (rd(f, 18, 2) != kEmRiscv) return fail(ENOEXEC, "not a RISC-V executable");
  if (rd(f, 16, 2) != kEtExec) return fail(ENOEXEC, "not a static executable (ET_EXEC)");
  const std::uint64_t phoff = rd(f, 32, 8);
  const std::uint64_t phentsize = rd(f, 54, 2);
  const std::uint64_t phnum = rd(f, 56, 2);
  if (phentsize != kPhdrSize || phnum == 0 || phnum > kMaxPhnum)
    return fail(ENOEXEC, "bad program header table");
  if (phoff > f.size() || phnum * kPhdrSize > f.size() - phoff)
    return fail(ENOEXEC, "truncated program headers");

  ElfResult r;
  ElfImage& img = r.image;
  img.entry = rd(f, 24, 8);
  img.phnum = phnum;
  for (std::uint64_t i = 0; i < phnum; ++i) {
    const std::size_t ph = phoff + i * kPhdrSize;
    const auto type = static_cast<std::uint32_t>(rd(f, ph, 4));
    if (type == kPtInterp) return fail(ENOEXEC, "dynamically linked (PT_INTERP)");
    if (type == kPtPhdr) img.phdr_vaddr = rd(f, ph + 16, 8);
    if (type != kPtLoad) continue;
    ElfSegment s;
    const auto flags = static_cast<std::uint32_t>(rd(f, ph + 4, 4));
    s.offset = rd(f, ph + 8, 8);
    s.vaddr = rd(f, ph + 16, 8);
    s.filesz = rd(f, ph + 32, 8);
    s.memsz = rd(f, ph + 40, 8);
    s.prot = ((flags & kPfR) ? 1u : 0u) | ((flags & kPfW) ? 2u : 0u) | ((flags & kPfX) ? 4u : 0u);
    if (s.memsz == 0) continue;
    if (s.filesz > s.memsz) return fail(EINVAL, "segment with filesz > memsz");
    if (s.offset > f.size() || s.filesz > f.size() - s.offset)
      return fail(EINVAL, "segment data beyond the file");
    if (s.vaddr % kPage != s.offset % kPage)
      return fail(EINVAL, "segment vaddr and offset not congruent");
    if (s.vaddr >= kUserTop || s.memsz > kUserTop - s.vaddr)
      return fail(EINVAL, "segment beyond user space");
    img.segments.push_back(s);
  }
  if (img.segments.empty()) return fail(ENOEXEC, "no PT_LOAD segment");
  std::sort(img.segments.begin(), img.segments.end(),
            [](const ElfSegment& a, const ElfSegment& b) { return a.vaddr < b.vaddr; });
  bool entry_ok = false;
  for (std::size_t i = 0; i < img.segments.size(); ++i) {
    const ElfSegment& s = img.segments[i];
    const std::uint64_t end = s.vaddr + s.memsz;
    // Page-granular: each page gets exactly one set of permissions.
    if (i > 0) {
      const ElfSegment& p = img.segments[i - 1];
      const std::uint64_t prev_end_page = (p.vaddr + p.memsz + kPage - 1) / kPage * kPage;
      if (s.vaddr / kPage * kPage < prev_end_page) return fail(EINVAL, "overlapping segments");
    }
    if ((s.prot & 4) && img.entry >= s.vaddr && img.entry < end) entry_ok = true;
    if (img.phdr_vaddr == 0 && phoff >= s.offset &&
        phoff + phnum * kPhdrSize <= s.offset + s.filesz) {
      img.phdr_vaddr = s.vaddr + (phoff - s.offset);
    }
    img.highest = std::max(img.highest, end);
  }
  if (!entry_ok) return fail(ENOEXEC, "entry point outside executable memory");
  return r;
}

InitialStack build_initial_stack(std::uint64_t stack_top, const std::vector<std::string>& argv,
                                 const std::vector<std::string>& envp, const ElfImage& image,
                                 std::uint64_t random_seed, std::size_t max_bytes) {
  // Build downwards in a buffer that stands for [stack_top - max_bytes, stack_top).
  std::vector<std::byte> buf(max_bytes);
  std::uint64_t sp = stack_top;
  bool overflow = false;
  auto push_bytes = [&](const void* p, std::size_t n) -> std::uint64_t {
    if (n > sp - (stack_top - max_bytes)) {
      overflow = true;
      return sp;
    }
    sp -= n;
    std::memcpy(buf.data() + (sp - (stack_top - max_bytes)), p, n);
    return sp;
  };
  const std::uint64_t zero = 0;
  push_bytes(&zero, 8);  // Linux ends the area with a NULL word
  std::vector<std::uint64_t> argv_ptrs, envp_ptrs;
  for (auto it = envp.rbegin(); it != envp.rend(); ++it)
    envp_ptrs.insert(envp_ptrs.begin(), push_bytes(it->c_str(), it->size() + 1));
  for (auto it = argv.rbegin(); it != argv.rend(); ++it)
    argv_ptrs.insert(argv_ptrs.begin(), push_bytes(it->c_str(), it->size() + 1));
  std::mt19937_64 rng(random_seed);
  std::uint64_t random[2] = {rng(), rng()};
  sp &= ~std::uint64_t{15};
  const std::uint64_t at_random = push_bytes(random, 16);

  // The table: argc, argv..., 0, envp..., 0, auxv pairs. Its size decides the final sp, which
  // must be 16-byte aligned (the RISC-V psABI).
  std::vector<std::uint64_t> table;
  table.push_back(argv.size());
  table.insert(table.end(), argv_ptrs.begin(), argv_ptrs.end());
  table.push_back(0);
  table.insert(table.end(), envp_ptrs.begin(), envp_ptrs.end());
  table.push_back(0);
  const std::uint64_t aux[][2] = {
      {3, image.phdr_vaddr}, {4, 56}, {5, image.phnum}, {6, 4096}, {9, image.entry},
      {25, at_random},       {0, 0}};
  for (const auto& a : aux) table.insert(table.end(), {a[0], a[1]});
  const std::size_t table_bytes = table.size() * 8;
  if (table_bytes > sp - (stack_top - max_bytes)) overflow = true;
  if (!overflow) {
    sp = (sp - table_bytes) & ~std::uint64_t{15};
    std::memcpy(buf.data() + (sp - (stack_top - max_bytes)), table.data(), table_bytes);
  }
  InitialStack st;
  if (overflow) return st;
  st.sp = sp;
  st.bytes.assign(buf.begin() + static_cast<std::ptrdiff_t>(sp - (stack_top - max_bytes)),
                  buf.end());
  return st;
}

}  // namespace teachos
