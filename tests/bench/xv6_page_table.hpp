// The baseline the page-table rows are compared with: an xv6-style page table with no locks,
// no metadata, no atomics, no RCU and no reference counts.
//
// It is xv6-riscv's vm.c (walk, mappages, uvmunmap without freeing) widened to 4 levels of
// 512 entries over 4 KiB nodes from aligned_alloc, zeroed on allocation as xv6's walk does.
// Like xv6, every call walks from the root: mappages re-walks for every page. Table PTEs hold
// the host address of the child node; leaf PTEs hold whatever physical address the caller
// maps (the benchmarks pass the same emulated-memory paddrs as the vmspace rows map).
//
// Everything is inline in this header, as vmspace's page-table templates are, so the compiler
// can inline both sides of a comparison alike. Single-threaded use only.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace vmspace::bench {

class Xv6PageTable {
 public:
  using Pte = std::uint64_t;
  // RISC-V Sv39-style PTE bits, as in xv6.
  static constexpr Pte kValid = 1u << 0;
  static constexpr Pte kRead = 1u << 1;
  static constexpr Pte kWrite = 1u << 2;
  static constexpr Pte kExec = 1u << 3;
  static constexpr Pte kUser = 1u << 4;
  static constexpr int kLevels = 4;
  static constexpr std::uint64_t kPageBytes = 4096;

  struct Translation {
    std::uint64_t pa;  // physical address of the byte at va
    Pte flags;         // the leaf's low 10 bits
  };

  Xv6PageTable() : root_(alloc_node()) {
    if (root_ == nullptr) std::abort();
  }
  ~Xv6PageTable() { free_tree(root_, kLevels - 1); }
  Xv6PageTable(const Xv6PageTable&) = delete;
  Xv6PageTable& operator=(const Xv6PageTable&) = delete;

  // xv6 walk(): the address of the last-level PTE of `va`, creating missing nodes when
  // `alloc`; nullptr if a node is missing (and !alloc) or allocation fails.
  Pte* walk(std::uint64_t va, bool alloc) noexcept {
    Pte* table = root_;
    for (int level = kLevels - 1; level > 0; --level) {
      Pte* pte = &table[index(level, va)];
      if (*pte & kValid) {
        table = node_of(*pte);
      } else {
        if (!alloc || (table = alloc_node()) == nullptr) return nullptr;
        *pte = pa_to_pte(reinterpret_cast<std::uintptr_t>(table)) | kValid;
      }
    }
    return &table[index(0, va)];
  }

  // xv6 mappages(): maps [va, va + size) to [pa, pa + size) one page at a time, walking from
  // the root for each page. Returns -1 on allocation failure; aborts on a remap (xv6 panics).
  int mappages(std::uint64_t va, std::uint64_t size, std::uint64_t pa, Pte perm) noexcept {
    std::uint64_t a = va & ~(kPageBytes - 1);
    const std::uint64_t last = (va + size - 1) & ~(kPageBytes - 1);
    for (;;) {
      Pte* pte = walk(a, true);
      if (pte == nullptr) return -1;
      if (*pte & kValid) std::abort();  // xv6: panic("mappages: remap")
      *pte = pa_to_pte(pa) | perm | kValid;
      if (a == last) break;
      a += kPageBytes;
      pa += kPageBytes;
    }
    return 0;
  }

  // xv6 uvmunmap(do_free = 0): unmaps `npages` pages from va, each of which must be mapped
  // (xv6 panics otherwise).
  void unmap(std::uint64_t va, std::uint64_t npages) noexcept {
    for (std::uint64_t a = va; a < va + npages * kPageBytes; a += kPageBytes) {
      Pte* pte = walk(a, false);
      if (pte == nullptr || (*pte & kValid) == 0) std::abort();  // xv6: panic("uvmunmap")
      *pte = 0;
    }
  }

  // xv6 walkaddr() without its user-bit check, returning the leaf flags too (what vmspace's
  // page_walk returns): the translation of `va`, or nullopt if unmapped.
  std::optional<Translation> translate(std::uint64_t va) const noexcept {
    const Pte* table = root_;
    for (int level = kLevels - 1; level > 0; --level) {
      const Pte pte = table[index(level, va)];
      if ((pte & kValid) == 0) return std::nullopt;
      table = node_of(pte);
    }
    const Pte pte = table[index(0, va)];
    if ((pte & kValid) == 0) return std::nullopt;
    return Translation{pte_to_pa(pte) + (va & (kPageBytes - 1)), pte & 0x3ff};
  }

  // Frees the (empty) last-level node covering `va` and clears the PTE that points to it.
  // Not in xv6 (which frees only whole trees); the map benchmark uses it, untimed, so that
  // each batch allocates its leaf table exactly as the vmspace row does.
  void free_leaf_table(std::uint64_t va) noexcept {
    Pte* table = root_;
    for (int level = kLevels - 1; level > 1; --level) {
      const Pte pte = table[index(level, va)];
      if ((pte & kValid) == 0) return;
      table = node_of(pte);
    }
    Pte& pte = table[index(1, va)];
    if ((pte & kValid) == 0) return;
    std::free(node_of(pte));
    pte = 0;
  }

 private:
  static constexpr std::size_t index(int level, std::uint64_t va) noexcept {
    return (va >> (12 + 9 * level)) & 511;
  }
  static constexpr Pte pa_to_pte(std::uint64_t pa) noexcept { return (pa >> 12) << 10; }
  static constexpr std::uint64_t pte_to_pa(Pte pte) noexcept { return (pte >> 10) << 12; }
  static Pte* node_of(Pte pte) noexcept { return reinterpret_cast<Pte*>(pte_to_pa(pte)); }

  // xv6 kalloc() + the memset in walk().
  static Pte* alloc_node() noexcept {
    void* p = std::aligned_alloc(kPageBytes, kPageBytes);
    if (p != nullptr) std::memset(p, 0, kPageBytes);
    return static_cast<Pte*>(p);
  }

  // xv6 freewalk(), without its "leaf still mapped" panic.
  static void free_tree(Pte* table, int level) noexcept {
    if (level > 0) {
      for (std::size_t i = 0; i < 512; ++i) {
        if (table[i] & kValid) free_tree(node_of(table[i]), level - 1);
      }
    }
    std::free(table);
  }

  Pte* root_;
};

}  // namespace vmspace::bench
