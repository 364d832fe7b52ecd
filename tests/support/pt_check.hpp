// Structural checks of a quiescent page table: the invariants of docs/spec_cases.md that
// apply to OSTD-style tables, and a census of its nodes
// and leaves. "Quiescent" means no cursor is alive and no other thread touches the table.
//
// Checked (numbers are the invariants of docs/spec_cases.md):
//   1  every node is reached exactly once; the root is never referenced by a PTE
//   2  a page-table entry at level L points to a page-table node frame whose recorded level is
//      L - 1; no leaf sits at the top level of a table whose top level cannot be unmapped
//   3  a leaf at level L has L <= kHighestTranslationLevel and a page_size(L)-aligned address
//   4  nr_children equals the number of present entries (the root counts only its own slice)
//   10 every present raw entry re-encodes to itself (decode/encode round trip)
//   14 a node frame is referenced exactly once (by its parent PTE, or by the PageTable handle)
// plus: no reachable node is stray or locked (so no cursor leaked a lock), and for the user
// config every frame covered by a tracked leaf is in use (0 < count < REF_COUNT_MAX).
// Not checked: item 8 (verified-pt prunes empty tables; OSTD keeps them until a covering unmap).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/internal/pt_walk.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/user_pt_config.hpp>

namespace vmspace::test {

struct PtCensus {
  std::size_t nodes = 0;                // reachable nodes, the root included
  std::array<std::size_t, 5> leaves{};  // leaves per level (index = level)
  std::vector<std::string> violations;  // empty when every check passed

  std::size_t total_leaves() const {
    std::size_t n = 0;
    for (std::size_t l : leaves) n += l;
    return n;
  }
  std::string report() const {
    std::string s;
    for (const auto& v : violations) s += v + "\n";
    return s;
  }
};

namespace internal {

// The census as a visitor of vmspace::internal::walk_table (vmspace/internal/pt_walk.hpp).
template <PageTableConfig C>
class Walker {
 public:
  using F = typename C::Pte;
  using K = ConstsOf<C>;

  PtCensus run(Paddr root) {
    seen_.insert(root);
    vmspace::internal::walk_table<C>(root, *this);
    return std::move(census_);
  }

  bool enter(Paddr pa, PagingLevel level) {
    ++census_.nodes;
    MetaSlot* slot = meta_slot(pa);
    if (slot->vtable != meta_vtable<PageTablePageMeta<C>>()) {
      fail("node 0x", pa, ": frame is not a page-table node");
      return false;
    }
    const auto& meta = vmspace::internal::NodeView<C>{pa}.meta();
    if (meta.level != level)
      fail("node 0x", pa, ": level ", int(meta.level), " reached at ", int(level));
    if (meta.stray) fail("node 0x", pa, ": reachable but stray");
    const std::uint32_t lock =
        boost::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(meta.lock))
            .load(boost::memory_order_acquire);
    if (lock != 0) fail("node 0x", pa, ": still locked (word 0x", lock, ")");
    const std::uint64_t rc = slot->ref_count_ref().load(boost::memory_order_relaxed);
    if (rc != 1) fail("node 0x", pa, ": reference count ", std::dec, rc, " (expected 1)");
    return true;
  }

  void absent(const vmspace::internal::PteAt& e) {
    if (e.raw != 0)
      fail("node 0x", e.node, "[", std::dec, e.index, "]: non-zero absent entry 0x", std::hex,
           e.raw);
  }

  void leaf(const vmspace::internal::PteAt& e) {
    const PteScalar s = check_reencodes(e);
    const PagingLevel level = e.level;
    if (!F::is_leaf(e.raw, level)) {
      fail("node 0x", e.node, "[", std::dec, e.index, "]: page-table entry at level 1");
      return;
    }
    ++census_.leaves[level];
    if (level > C::kHighestTranslationLevel)
      fail("leaf at level ", int(level), " above the highest translation level");
    if (!C::kTopLevelCanUnmap && level == K::kNrLevels)
      fail("leaf at the top level of a kernel-style table");
    if (!is_aligned(s.paddr, page_size<K>(level)))
      fail("leaf 0x", s.paddr, " misaligned for level ", int(level));
    if constexpr (std::is_same_v<C, UserPtConfig>) check_user_leaf(s, level);
  }

  bool child(const vmspace::internal::PteAt& e) {
    const Paddr child = check_reencodes(e).paddr;
    if (!seen_.insert(child).second) {
      fail("node 0x", child, " referenced twice (or the root is referenced)");
      return false;
    }
    return true;
  }

  void leave(Paddr pa, PagingLevel, std::size_t present) {
    const auto& meta = vmspace::internal::NodeView<C>{pa}.meta();
    if (present != meta.nr_children) {
      fail("node 0x", pa, ": nr_children ", std::dec, meta.nr_children, " but ", present,
           " present entries");
    }
  }

 private:
  template <class... A>
  void fail(const A&... parts) {
    std::ostringstream os;
    os << std::hex;
    (os << ... << parts);
    census_.violations.push_back(os.str());
  }

  PteScalar check_reencodes(const vmspace::internal::PteAt& e) {
    const PteScalar s = F::decode(e.raw, e.level);
    if (F::encode(s, e.level) != e.raw) {
      fail("node 0x", e.node, "[", std::dec, e.index, "]: 0x", std::hex, e.raw,
           " does not re-encode");
    }
    return s;
  }

  void check_user_leaf(const PteScalar& s, PagingLevel level) {
    if (has(s.prop.priv_flags, PrivilegedPageFlags::AVAIL1)) return;  // untracked
    for (Paddr f = s.paddr; f < s.paddr + page_size<K>(level); f += kPageSize) {
      const std::uint64_t rc = meta_slot(f)->ref_count_ref().load(boost::memory_order_relaxed);
      if (rc == 0 || rc >= kRefCountMax) fail("tracked frame 0x", f, " has reference count 0x", rc);
    }
  }

  PtCensus census_;
  std::set<Paddr> seen_;
};

}  // namespace internal

template <PageTableConfig C>
PtCensus census(const PageTable<C>& pt) {
  return test::internal::Walker<C>().run(pt.root_paddr());
}

// The lock word of the node at `pa` (0 when free; bit 0 set when a thread sleeps on it).
template <PageTableConfig C>
std::uint32_t lock_word(Paddr pa) {
  return boost::atomic_ref<std::uint32_t>(vmspace::internal::NodeView<C>{pa}.meta().lock)
      .load(boost::memory_order_acquire);
}

// The node covering `va` at `level` (walking down from the root), or 0 if there is none.
template <PageTableConfig C>
Paddr node_at(const PageTable<C>& pt, Vaddr va, PagingLevel level) {
  using F = typename C::Pte;
  Paddr node = pt.root_paddr();
  for (PagingLevel l = ConstsOf<C>::kNrLevels; l > level; --l) {
    const std::uint64_t raw =
        vmspace::internal::NodeView<C>{node}.load_acquire(pte_index<ConstsOf<C>>(va, l));
    if (!vmspace::internal::is_pt_entry<C>(raw, l)) return 0;
    node = F::paddr(raw, l);
  }
  return node;
}

}  // namespace vmspace::test

// CHECK that a quiescent table passes every structural check, printing the violations.
#define VMS_CHECK_PT_INVARIANTS(pt)                       \
  do {                                                    \
    const auto vms_census_ = ::vmspace::test::census(pt); \
    INFO(vms_census_.report());                           \
    CHECK(vms_census_.violations.empty());                \
  } while (0)
