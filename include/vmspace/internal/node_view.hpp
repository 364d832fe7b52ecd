// Internal: not API; may change without notice.
//
// Raw access to one page-table node (its metadata and entry words) and node allocation: the
// layer below the cursors (OSTD `ostd/src/mm/page_table/node/mod.rs`, `PageTableGuard`, and
// `node/entry.rs`, `Entry`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/addr.hpp>
#include <vmspace/frame.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/internal/node_lock.hpp>
#include <vmspace/page_table/node.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

namespace detail {

// Non-owning access to one node: its metadata and its entry words.
template <PageTableConfig C>
struct NodeView {
  Paddr pa;

  PageTablePageMeta<C>& meta() const noexcept {
    return *std::launder(static_cast<PageTablePageMeta<C>*>(meta_slot(pa)->meta_ptr()));
  }
  std::uint64_t& word(std::size_t i) const noexcept {
    return reinterpret_cast<std::uint64_t*>(paddr_to_vaddr(pa))[i];
  }
  boost::atomic_ref<std::uint64_t> entry(std::size_t i) const noexcept {
    return boost::atomic_ref<std::uint64_t>(word(i));
  }
  std::uint64_t load_acquire(std::size_t i) const noexcept {
    return entry(i).load(boost::memory_order_acquire);
  }
  std::uint64_t load_locked(std::size_t i) const noexcept {
    return entry(i).load(boost::memory_order_relaxed);
  }
  void store(std::size_t i, std::uint64_t v) const noexcept {
    entry(i).store(v, boost::memory_order_release);
  }
  LockResult lock(LockWait wait) const noexcept { return node_lock(meta().lock, wait); }
  void unlock() const noexcept { node_unlock(meta().lock); }
};

template <PageTableConfig C>
constexpr bool is_pt_entry(std::uint64_t raw, PagingLevel level) noexcept {
  using F = typename C::Pte;
  return level > 1 && F::is_present(raw, level) && !F::is_leaf(raw, level);
}

// Allocates a zeroed node at `level`, locked by the calling thread, and leaks its reference to
// the caller (who publishes it in a PTE or keeps it as a root).
template <PageTableConfig C>
Result<Paddr, PageTableError> alloc_node(PagingLevel level, bool locked) noexcept {
  PageTablePageMeta<C> meta;
  meta.lock = locked ? locked_by_me() : 0;
  meta.level = level;
  auto f = FrameAllocOptions().alloc_frame_with(meta);
  if (!f) return err(PageTableError::NoMemory);
  return std::move(*f).into_raw();
}

constexpr std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

}  // namespace detail

}  // namespace vmspace
