// interpret(): reads any page table (any PageTableConfig, any PTE format) into the abstract
// model's terms — the list of its leaf mappings (the specifications' abstraction function:
// vostd's `view_rec` of a page-table tree, verified-nrkernel's `interp`).
//
// Reads are lock-free acquire loads, so the result is exact only when no cursor is changing the
// table (at quiescent points, or over a range the caller has locked with a cursor).
#pragma once

#include <utility>
#include <vector>

#include <vmspace/check/model.hpp>
#include <vmspace/internal/pt_walk.hpp>
#include <vmspace/page_table.hpp>

namespace vmspace::check {

namespace internal {

// Collects every leaf as a Mapping.
template <PageTableConfig C>
struct LeafCollector {
  std::vector<Mapping> out;
  void leaf(const vmspace::internal::PteAt& e) {
    const PteScalar s = C::Pte::decode(e.raw, e.level);
    out.push_back(Mapping{e.va, e.level, s.paddr, s.prop});
  }
};

}  // namespace internal

// Every leaf mapping of `pt` within the config's root slice, in address order.
template <PageTableConfig C>
std::vector<Mapping> interpret(const PageTable<C>& pt) {
  internal::LeafCollector<C> c;
  vmspace::internal::walk_table<C>(pt.root_paddr(), c);
  return std::move(c.out);
}

// Every leaf mapping under the node `node` at `level`, whose first address is `base` (e.g. a
// detached sub-tree from StrayPageTableFrag, before it is dropped).
template <PageTableConfig C>
std::vector<Mapping> interpret_subtree(Paddr node, PagingLevel level, Vaddr base) {
  internal::LeafCollector<C> c;
  vmspace::internal::walk_entries<C>(node, level, base, 0, kNrEntries<ConstsOf<C>>, c);
  return std::move(c.out);
}

}  // namespace vmspace::check
