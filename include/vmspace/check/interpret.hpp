// interpret(): reads any page table (any PageTableConfig, any PTE format) into the abstract
// model's terms — the list of its leaf mappings (verified-specs §A.6 view_rec, §B.5 interpret).
//
// Reads are lock-free acquire loads, so the result is exact only when no cursor is changing the
// table (at quiescent points, or over a range the caller has locked with a cursor).
#pragma once

#include <vector>

#include <vmspace/check/model.hpp>
#include <vmspace/page_table.hpp>

namespace vmspace::check {

namespace detail_interpret {

template <PageTableConfig C, class F>
void walk_leaves(Paddr node, PagingLevel level, Vaddr base, std::size_t first, std::size_t last, F& visit) {
  using Pte = typename C::Pte;
  using K = ConstsOf<C>;
  const vmspace::detail::NodeView<C> view{node};
  for (std::size_t i = first; i < last; ++i) {
    const std::uint64_t raw = view.load_acquire(i);
    if (!Pte::is_present(raw, level)) continue;
    const Vaddr va = sign_extend<K>(base + i * page_size<K>(level));
    if (vmspace::detail::is_pt_entry<C>(raw, level)) {
      walk_leaves<C>(Pte::paddr(raw, level), static_cast<PagingLevel>(level - 1), va, 0, kNrEntries<K>, visit);
    } else {
      const PteScalar s = Pte::decode(raw, level);
      visit(Mapping{va, level, s.paddr, s.prop});
    }
  }
}

}  // namespace detail_interpret

// Every leaf mapping of `pt` within the config's root slice, in address order.
template <PageTableConfig C>
std::vector<Mapping> interpret(const PageTable<C>& pt) {
  std::vector<Mapping> out;
  auto visit = [&](const Mapping& m) { out.push_back(m); };
  detail_interpret::walk_leaves<C>(pt.root_paddr(), ConstsOf<C>::kNrLevels, 0, C::kTopLevelIndexStart,
                                   C::kTopLevelIndexEnd, visit);
  return out;
}

// Every leaf mapping under the node `node` at `level`, whose first address is `base` (e.g. a
// detached sub-tree from StrayPageTableFrag, before it is dropped).
template <PageTableConfig C>
std::vector<Mapping> interpret_subtree(Paddr node, PagingLevel level, Vaddr base) {
  std::vector<Mapping> out;
  auto visit = [&](const Mapping& m) { out.push_back(m); };
  detail_interpret::walk_leaves<C>(node, level, base, 0, kNrEntries<ConstsOf<C>>, visit);
  return out;
}

}  // namespace vmspace::check
