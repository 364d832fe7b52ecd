// What CursorMut::take_next removes from a page table: one mapped item or a whole detached
// sub-tree (OSTD `ostd/src/mm/page_table/cursor/mod.rs`, `PageTableFrag`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <variant>

#include <vmspace/addr.hpp>
#include <vmspace/page_table/node.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/rcu.hpp>

namespace vmspace {

// A piece removed from a page table by CursorMut::take_next. The caller must keep it until
// every CPU that may cache a translation through it has flushed its TLB; dropping it then
// destroys it after an RCU grace period.
template <PageTableConfig C>
struct MappedFrag {
  Vaddr va;                        // start of the removed mapping
  PagingLevel level;               // its level (size = page_size(level))
  RcuDrop<typename C::Item> item;  // the item, with the property it had when removed
};
template <PageTableConfig C>
// A whole page-table sub-tree removed by CursorMut::take_next (an intermediate node that covered
// the range, with everything below it). The same keep-until-flushed rule as for MappedFrag applies;
// dropping it frees the sub-tree and its mapped items after an RCU grace period.
struct StrayPageTableFrag {
  Vaddr va;                        // start of the range the sub-tree covered
  std::uint64_t len;               // size of that range
  std::size_t num_frames;          // base pages its leaves mapped: OSTD's count of non-absent
                                   // level-1 entries, plus 512^(L-1) per level-L huge leaf
  RcuDrop<PageTableNode<C>> node;  // the detached sub-tree's root
};
template <PageTableConfig C>
// What CursorMut::take_next removed: a single mapping or a whole sub-tree.
using PageTableFrag = std::variant<MappedFrag<C>, StrayPageTableFrag<C>>;

}  // namespace vmspace
