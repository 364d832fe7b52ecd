// Internal: not API; may change without notice.
//
// The software page-table walks of the checking code: a visit of every entry of a (sub)tree,
// shared by check::interpret, the invariant checks (check/invariants.hpp) and the tests'
// census (tests/support/pt_check.hpp); and the descent towards one address, used by
// check_tlb_coherence.
//
// Both read entries with acquire loads and take no lock, so they are exact only when no cursor
// changes the table (at quiescent points, or under a cursor's lock). Two walks keep their own
// loop: the emulated MMU's (src/vm/mmu.cpp), which sets ACCESSED/DIRTY with a compare-and-swap
// on the leaf, restarts from the root when it loses that race, and is the miss path of every
// user access; and PageTable::page_walk, which lives in page_table.hpp, below this header.
#pragma once

#include <cstddef>
#include <cstdint>

#include <vmspace/page_table.hpp>

namespace vmspace::internal {

// One entry met by a walk.
struct PteAt {
  Paddr node;         // the node holding the entry
  std::size_t index;  // its index in the node
  PagingLevel level;  // the node's level
  Vaddr va;           // the first address the entry covers (sign-extended)
  std::uint64_t raw;  // its value
};

// Visits entries [first, last) of `node` (at `level`, its entry 0 covering addresses from
// `base`) and, depth first in address order, every entry of the nodes below them. The visitor
// `v` has any of these public members (one it lacks, or hides, is not called):
//   bool enter(Paddr node, PagingLevel level)  before the node's entries; false skips them
//                                              (and leave)
//   void absent(const PteAt&)                  an entry that is not present
//   void leaf(const PteAt&)                    a present entry that does not point to a node
//                                              (including a non-leaf format entry at level 1)
//   bool child(const PteAt&)                   a present entry that points to a node; false
//                                              does not descend
//   void leave(Paddr node, PagingLevel level, std::size_t present)
//                                              after the node's entries; `present` counts the
//                                              present ones
template <PageTableConfig C, class V>
void walk_entries(Paddr node, PagingLevel level, Vaddr base, std::size_t first, std::size_t last,
                  V& v) {
  using Pte = typename C::Pte;
  using K = ConstsOf<C>;
  if constexpr (requires { v.enter(node, level); }) {
    if (!v.enter(node, level)) return;
  }
  const NodeView<C> view{node};
  std::size_t present = 0;
  for (std::size_t i = first; i < last; ++i) {
    const PteAt e{node, i, level, sign_extend<K>(base + i * page_size<K>(level)),
                  view.load_acquire(i)};
    if (!Pte::is_present(e.raw, level)) {
      if constexpr (requires { v.absent(e); }) v.absent(e);
      continue;
    }
    ++present;
    if (!is_pt_entry<C>(e.raw, level)) {
      if constexpr (requires { v.leaf(e); }) v.leaf(e);
      continue;
    }
    bool descend = true;
    if constexpr (requires { v.child(e); }) descend = v.child(e);
    if (descend) {
      walk_entries<C>(Pte::paddr(e.raw, level), static_cast<PagingLevel>(level - 1), e.va, 0,
                      kNrEntries<K>, v);
    }
  }
  if constexpr (requires { v.leave(node, level, present); }) v.leave(node, level, present);
}

// walk_entries over a whole table: the root's own slice [kTopLevelIndexStart,
// kTopLevelIndexEnd) and everything below it.
template <PageTableConfig C, class V>
void walk_table(Paddr root, V& v) {
  walk_entries<C>(root, ConstsOf<C>::kNrLevels, 0, C::kTopLevelIndexStart, C::kTopLevelIndexEnd, v);
}

// Descends from `root` towards `va` and returns the entry where the descent ends: the first
// absent entry or leaf on the way, or the entry at level `stop`.
template <PageTableConfig C>
PteAt descend(Paddr root, Vaddr va, PagingLevel stop = 1) noexcept {
  using Pte = typename C::Pte;
  using K = ConstsOf<C>;
  Paddr node = root;
  for (PagingLevel level = K::kNrLevels;; --level) {
    const std::size_t i = pte_index<K>(va, level);
    const std::uint64_t raw = NodeView<C>{node}.load_acquire(i);
    if (level <= stop || !is_pt_entry<C>(raw, level)) {
      return PteAt{node, i, level, align_down(va, page_size<K>(level)), raw};
    }
    node = Pte::paddr(raw, level);
  }
}

}  // namespace vmspace::internal
