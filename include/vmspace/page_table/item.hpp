// The items a page table's leaves own, shared by the user and the kernel table (OSTD
// `ostd/src/mm/vm_space.rs`, `VmItem`, and `ostd/src/mm/kspace/mod.rs`, `MappedItem`).
//
// An item is either tracked memory — frames whose references the PTE owns — or untracked
// physical memory (I/O memory) the table does not own, at any level. The tables differ only in
// what tracked memory is (TrackedMemory<T> says how a PTE holds a T) and in which kind the
// AVAIL1 bit of a PTE marks; item properties never carry AVAIL1 themselves.
#pragma once

#include <concepts>
#include <cstdint>
#include <utility>
#include <variant>

#include <vmspace/addr.hpp>
#include <vmspace/frame.hpp>
#include <vmspace/page_prop.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/segment.hpp>

namespace vmspace {

// How a leaf PTE holds tracked memory of type T. A specialization provides
//   static PagingLevel level(const T&) noexcept;        // 0 if T cannot be mapped as one leaf
//   static T from_raw(Paddr pa, PagingLevel level) noexcept;  // takes back what into_raw leaked
// and T itself provides paddr() and an rvalue into_raw() that leaks its references.
template <class T>
struct TrackedMemory;

// An owned leaf item: tracked memory of type T, or an untracked physical range.
template <class T>
class PtItem {
 public:
  static PtItem tracked(T memory, PageProperty prop) noexcept { return PtItem(std::move(memory), strip(prop)); }
  // Untracked physical memory (I/O memory) of one page at `level`.
  static PtItem untracked(Paddr pa, PagingLevel level, PageProperty prop) noexcept {
    return PtItem(Untracked{pa, level}, strip(prop));
  }

  PtItem(PtItem&&) noexcept = default;
  PtItem& operator=(PtItem&&) noexcept = default;

  bool is_tracked() const noexcept { return std::holds_alternative<T>(what_); }
  // The tracked memory. Precondition: is_tracked().
  const T& tracked_memory() const noexcept { return std::get<T>(what_); }
  T take_tracked_memory() && noexcept { return std::move(std::get<T>(what_)); }
  Paddr paddr() const noexcept { return is_tracked() ? tracked_memory().paddr() : std::get<Untracked>(what_).pa; }
  // 0 when tracked memory has no mappable size.
  PagingLevel level() const noexcept {
    return is_tracked() ? TrackedMemory<T>::level(tracked_memory()) : std::get<Untracked>(what_).level;
  }
  const PageProperty& prop() const noexcept { return prop_; }

  // The names the user and the kernel item had before they shared this template.
  static PtItem tracked(UFrame frame, PageProperty prop) noexcept
    requires std::same_as<T, USegment>
  {
    return tracked(USegment(std::move(frame)), prop);
  }
  const USegment& segment() const noexcept
    requires std::same_as<T, USegment>
  {
    return tracked_memory();
  }
  USegment take_segment() && noexcept
    requires std::same_as<T, USegment>
  {
    return std::move(*this).take_tracked_memory();
  }
  const DynFrame& frame() const noexcept
    requires std::same_as<T, DynFrame>
  {
    return tracked_memory();
  }
  DynFrame take_frame() && noexcept
    requires std::same_as<T, DynFrame>
  {
    return std::move(*this).take_tracked_memory();
  }

 private:
  struct Untracked {
    Paddr pa;
    PagingLevel level;
  };
  static constexpr PageProperty strip(PageProperty p) noexcept {
    p.priv_flags &= ~PrivilegedPageFlags::AVAIL1;
    return p;
  }
  PtItem(std::variant<T, Untracked> what, PageProperty prop) noexcept : what_(std::move(what)), prop_(prop) {}

  std::variant<T, Untracked> what_;
  PageProperty prop_;
};

// A borrowed view of a leaf item, valid while its cursor (or RCU section) keeps the PTE.
template <class T>
struct PtItemRef {
  bool tracked = false;
  Paddr paddr = 0;
  PagingLevel level = 1;
  PageProperty prop{};

  // The first frame of tracked user memory. Precondition: tracked.
  FrameRef<AnyUFrameMeta> frame() const noexcept
    requires std::same_as<T, USegment>
  {
    return FrameRef<AnyUFrameMeta>::borrow_paddr(paddr);
  }
};

// Which kind of item the AVAIL1 bit of a PTE marks.
enum class Avail1Marks : std::uint8_t { Untracked, Tracked };

// The item half of a PageTableConfig (item_raw_info, item_into_raw, item_from_raw,
// item_ref_from_raw, is_tracked) for PtItem<T>, with AVAIL1 marking `kMarks`.
template <class T, Avail1Marks kMarks>
struct PtItemCodec {
  using Item = PtItem<T>;
  using ItemRef = PtItemRef<T>;

  // Whether a raw leaf owns its memory (for the invariant checker, too).
  static bool is_tracked(const RawItem& raw) noexcept {
    return has(raw.prop.priv_flags, PrivilegedPageFlags::AVAIL1) == (kMarks == Avail1Marks::Tracked);
  }
  static RawItem item_raw_info(const Item& item) noexcept {
    PageProperty p = item.prop();
    if (item.is_tracked() == (kMarks == Avail1Marks::Tracked)) p.priv_flags |= PrivilegedPageFlags::AVAIL1;
    return RawItem{item.paddr(), item.level(), p};
  }
  static RawItem item_into_raw(Item&& item) noexcept {
    RawItem raw = item_raw_info(item);
    if (item.is_tracked()) (void)std::move(item).take_tracked_memory().into_raw();
    return raw;
  }
  static Item item_from_raw(const RawItem& raw) noexcept {
    if (!is_tracked(raw)) return Item::untracked(raw.paddr, raw.level, raw.prop);
    return Item::tracked(TrackedMemory<T>::from_raw(raw.paddr, raw.level), raw.prop);
  }
  static ItemRef item_ref_from_raw(const RawItem& raw) noexcept {
    PageProperty p = raw.prop;
    p.priv_flags &= ~PrivilegedPageFlags::AVAIL1;
    return ItemRef{is_tracked(raw), raw.paddr, raw.level, p};
  }
};

}  // namespace vmspace
