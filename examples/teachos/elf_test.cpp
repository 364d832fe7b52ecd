// The ELF loader on good and malformed executables, and the initial stack's layout.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "elf.hpp"

using namespace teachos;

namespace {

void put(std::vector<std::byte>& f, std::size_t off, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    f[off + i] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
}

struct Seg {
  std::uint64_t vaddr, memsz, offset, filesz;
  std::uint32_t flags;  // PF_X 1, PF_W 2, PF_R 4
};

// A static RISC-V executable: the header, the program headers and 0x3000 bytes of "code",
// with the given segments. Default: text at 0x10000 (R+X) and data at 0x12000 (R+W, bss).
std::vector<std::byte> make_elf(std::vector<Seg> segs = {{0x10000, 0x1000, 0, 0x1000, 5},
                                                         {0x12000, 0x3000, 0x2000, 0x800, 6}},
                                std::uint64_t entry = 0x10100) {
  std::vector<std::byte> f(0x3000);
  const unsigned char ident[] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
  std::memcpy(f.data(), ident, sizeof ident);
  put(f, 16, 2, 2);    // ET_EXEC
  put(f, 18, 243, 2);  // EM_RISCV
  put(f, 20, 1, 4);    // EV_CURRENT
  put(f, 24, entry, 8);
  put(f, 32, 64, 8);  // phoff
  put(f, 52, 64, 2);  // ehsize
  put(f, 54, 56, 2);  // phentsize
  put(f, 56, segs.size(), 2);
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const std::size_t ph = 64 + 56 * i;
    put(f, ph, 1, 4);  // PT_LOAD
    put(f, ph + 4, segs[i].flags, 4);
    put(f, ph + 8, segs[i].offset, 8);
    put(f, ph + 16, segs[i].vaddr, 8);
    put(f, ph + 24, segs[i].vaddr, 8);
    put(f, ph + 32, segs[i].filesz, 8);
    put(f, ph + 40, segs[i].memsz, 8);
    put(f, ph + 48, 0x1000, 8);
  }
  return f;
}

int error_of(const std::vector<std::byte>& f) { return elf_parse(f).error; }

}  // namespace

TEST_CASE("a well-formed static executable parses into its segments") {
  auto f = make_elf();
  ElfResult r = elf_parse(f);
  REQUIRE(r.error == 0);
  REQUIRE(r.image.segments.size() == 2);
  CHECK(r.image.segments[0].prot == 5);  // R+X, never writable
  CHECK(r.image.segments[1].prot == 3);
  CHECK(r.image.entry == 0x10100);
  CHECK(r.image.highest == 0x15000);
  CHECK(r.image.phdr_vaddr == 0x10040);  // the headers lie in the text segment's file bytes
  CHECK(r.image.phnum == 2);
}

TEST_CASE("malformed executables are refused with ENOEXEC or EINVAL") {
  SUBCASE("truncated header") {
    auto f = make_elf();
    f.resize(40);
    CHECK(error_of(f) == ENOEXEC);
  }
  SUBCASE("truncated program headers") {
    auto f = make_elf();
    put(f, 32, f.size() - 30, 8);
    CHECK(error_of(f) == ENOEXEC);
  }
  SUBCASE("bad magic") {
    auto f = make_elf();
    f[1] = std::byte{'X'};
    CHECK(error_of(f) == ENOEXEC);
  }
  SUBCASE("wrong machine") {
    auto f = make_elf();
    put(f, 18, 62, 2);  // x86-64
    CHECK(error_of(f) == ENOEXEC);
  }
  SUBCASE("not ELF64") {
    auto f = make_elf();
    f[4] = std::byte{1};
    CHECK(error_of(f) == ENOEXEC);
  }
  SUBCASE("position-independent (ET_DYN)") {
    auto f = make_elf();
    put(f, 16, 3, 2);
    CHECK(error_of(f) == ENOEXEC);
  }
  SUBCASE("segment data beyond the end of the file") {
    CHECK(error_of(make_elf({{0x10000, 0x8000, 0, 0x8000, 5}})) == EINVAL);
  }
  SUBCASE("overlapping segments") {
    CHECK(error_of(make_elf(
              {{0x10000, 0x2000, 0, 0x1000, 5}, {0x11000, 0x1000, 0x1000, 0x800, 6}})) == EINVAL);
  }
  SUBCASE("segments sharing a page") {
    CHECK(error_of(make_elf({{0x10000, 0x800, 0, 0x800, 5}, {0x10800, 0x100, 0x800, 0x100, 6}})) ==
          EINVAL);
  }
  SUBCASE("segment beyond user space") {
    CHECK(error_of(make_elf(
              {{0x10000, 0x1000, 0, 0x1000, 5}, {kUserTop, 0x1000, 0x1000, 0x100, 6}})) == EINVAL);
  }
  SUBCASE("huge p_memsz wraps the address space") {
    CHECK(error_of(make_elf({{0x10000, 0x1000, 0, 0x1000, 5},
                             {0x12000, ~0ULL - 0x1000, 0x2000, 0x100, 6}})) == EINVAL);
  }
  SUBCASE("filesz larger than memsz") {
    CHECK(error_of(make_elf({{0x10000, 0x100, 0, 0x1000, 5}})) == EINVAL);
  }
  SUBCASE("vaddr and offset not congruent") {
    CHECK(error_of(make_elf({{0x10010, 0x100, 0, 0x100, 5}}, 0x10020)) == EINVAL);
  }
  SUBCASE("no loadable segment") { CHECK(error_of(make_elf({})) == ENOEXEC); }
  SUBCASE("entry outside executable memory") {
    CHECK(error_of(make_elf({{0x10000, 0x1000, 0, 0x1000, 5}}, 0x20000)) == ENOEXEC);
  }
  SUBCASE("entry in a non-executable segment") {
    CHECK(error_of(make_elf({{0x10000, 0x1000, 0, 0x1000, 5}, {0x12000, 0x1000, 0x2000, 0x100, 6}},
                            0x12000)) == ENOEXEC);
  }
}

TEST_CASE("the initial stack is laid out as Linux does") {
  ElfImage img = elf_parse(make_elf()).image;
  const std::uint64_t top = 0x3f'ffff'f000ULL;
  InitialStack st = build_initial_stack(top, {"prog", "one"}, {"A=1"}, img, 7, 64 * 1024);
  REQUIRE(st.sp != 0);
  CHECK(st.sp % 16 == 0);
  REQUIRE(st.sp + st.bytes.size() == top);
  auto word = [&](std::uint64_t va) {
    std::uint64_t v;
    std::memcpy(&v, st.bytes.data() + (va - st.sp), 8);
    return v;
  };
  auto str = [&](std::uint64_t va) {
    return std::string(reinterpret_cast<const char*>(st.bytes.data() + (va - st.sp)));
  };
  CHECK(word(st.sp) == 2);  // argc
  CHECK(str(word(st.sp + 8)) == "prog");
  CHECK(str(word(st.sp + 16)) == "one");
  CHECK(word(st.sp + 24) == 0);
  CHECK(str(word(st.sp + 32)) == "A=1");
  CHECK(word(st.sp + 40) == 0);
  // auxv: (type, value) pairs until AT_NULL.
  std::uint64_t at = st.sp + 48;
  std::map<std::uint64_t, std::uint64_t> aux;
  for (; word(at) != 0; at += 16) aux[word(at)] = word(at + 8);
  CHECK(aux[6] == 4096);       // AT_PAGESZ
  CHECK(aux[9] == img.entry);  // AT_ENTRY
  CHECK(aux[3] == img.phdr_vaddr);
  CHECK(aux[5] == img.phnum);
  REQUIRE(aux.count(25) == 1);  // AT_RANDOM: 16 bytes inside the stack
  CHECK(aux[25] >= st.sp);
  CHECK(aux[25] + 16 <= top);
}

TEST_CASE("arguments that do not fit are refused") {
  ElfImage img = elf_parse(make_elf()).image;
  InitialStack st =
      build_initial_stack(0x3f'ffff'f000ULL, {std::string(5000, 'x')}, {}, img, 1, 4096);
  CHECK(st.sp == 0);
}
