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
  // Tracked memory: mapping the item hands the references of `memory` to the PTE. The AVAIL1
  // privileged flag of `prop` is dropped (the table uses that bit itself).
  static PtItem tracked(T memory, PageProperty prop) noexcept {
    return PtItem(std::move(memory), strip(prop));
  }
  // Untracked physical memory (I/O memory) of one page at `level`.
  static PtItem untracked(Paddr pa, PagingLevel level, PageProperty prop) noexcept {
    return PtItem(Untracked{pa, level}, strip(prop));
  }

  // Move-only: an item owns what it maps.
  PtItem(PtItem&&) noexcept = default;
  // Move assignment; drops the references the target held.
  PtItem& operator=(PtItem&&) noexcept = default;

  // Whether the item holds tracked memory (else untracked physical memory).
  bool is_tracked() const noexcept { return std::holds_alternative<T>(what_); }
  // The tracked memory. Precondition: is_tracked().
  const T& tracked_memory() const noexcept { return std::get<T>(what_); }
  // Moves the tracked memory out. Precondition: is_tracked().
  T take_tracked_memory() && noexcept { return std::move(std::get<T>(what_)); }
  // Physical address of the first byte the item maps.
  Paddr paddr() const noexcept {
    return is_tracked() ? tracked_memory().paddr() : std::get<Untracked>(what_).pa;
  }
  // 0 when tracked memory has no mappable size.
  PagingLevel level() const noexcept {
    return is_tracked() ? TrackedMemory<T>::level(tracked_memory())
                        : std::get<Untracked>(what_).level;
  }
  // The property to map with (never with AVAIL1 set).
  const PageProperty& prop() const noexcept { return prop_; }

  // The names the user and the kernel item had before they shared this template.
  static PtItem tracked(UFrame frame,
                        PageProperty prop) noexcept requires std::same_as<T, USegment> {
    return tracked(USegment(std::move(frame)), prop);
  }
  // User items: the tracked segment. Precondition: is_tracked().
  const USegment& segment() const noexcept requires std::same_as<T, USegment> {
    return tracked_memory();
  }
  // User items: moves the tracked segment out. Precondition: is_tracked().
  USegment take_segment() && noexcept requires std::same_as<T, USegment> {
    return std::move(*this).take_tracked_memory();
  }
  // Kernel items: the tracked frame. Precondition: is_tracked().
  const DynFrame& frame() const noexcept requires std::same_as<T, DynFrame> {
    return tracked_memory();
  }
  // Kernel items: moves the tracked frame out. Precondition: is_tracked().
  DynFrame take_frame() && noexcept requires std::same_as<T, DynFrame> {
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
  PtItem(std::variant<T, Untracked> what, PageProperty prop) noexcept
      : what_(std::move(what)), prop_(prop) {}

  std::variant<T, Untracked> what_;
  PageProperty prop_;
};

// A borrowed view of a leaf item, valid while its cursor (or RCU section) keeps the PTE.
template <class T>
struct PtItemRef {
  // Whether the PTE owns the memory it maps.
  bool tracked = false;
  // Physical base of the mapped page.
  Paddr paddr = 0;
  // Level of the leaf (its size is page_size(level)).
  PagingLevel level = 1;
  // The mapping's property, without the table's AVAIL1 marker.
  PageProperty prop{};

  // The first frame of tracked user memory. Precondition: tracked.
  FrameRef<AnyUFrameMeta> frame() const noexcept requires std::same_as<T, USegment> {
    return FrameRef<AnyUFrameMeta>::borrow_paddr(paddr);
  }
};

// Which kind of item the AVAIL1 bit of a PTE marks.
enum class Avail1Marks : std::uint8_t { Untracked, Tracked };

// The item half of a PageTableConfig (item_raw_info, item_into_raw, item_from_raw,
// item_ref_from_raw, is_tracked) for PtItem<T>, with AVAIL1 marking `kMarks`.
template <class T, Avail1Marks kMarks>
struct PtItemCodec {
  // The owned item type (PageTableConfig::Item).
  using Item = PtItem<T>;
  // The borrowed item type (PageTableConfig::ItemRef).
  using ItemRef = PtItemRef<T>;

  // Whether a raw leaf owns its memory (for the invariant checker, too).
  static bool is_tracked(const RawItem& raw) noexcept {
    return has(raw.prop.priv_flags, PrivilegedPageFlags::AVAIL1) ==
           (kMarks == Avail1Marks::Tracked);
  }
  // What the PTE for `item` holds: its address, level and property, with AVAIL1 set iff the item is
  // of the marked kind. Consumes nothing.
  static RawItem item_raw_info(const Item& item) noexcept {
    PageProperty p = item.prop();
    if (item.is_tracked() == (kMarks == Avail1Marks::Tracked))
      p.priv_flags |= PrivilegedPageFlags::AVAIL1;
    return RawItem{item.paddr(), item.level(), p};
  }
  // Like item_raw_info, and leaks the item's references into the PTE; item_from_raw takes them back
  // exactly once.
  static RawItem item_into_raw(Item&& item) noexcept {
    RawItem raw = item_raw_info(item);
    if (item.is_tracked()) (void)std::move(item).take_tracked_memory().into_raw();
    return raw;
  }
  // Rebuilds the owned item from a PTE, taking back the references item_into_raw leaked.
  // Precondition: `raw` came from item_into_raw and has not been taken back yet.
  static Item item_from_raw(const RawItem& raw) noexcept {
    if (!is_tracked(raw)) return Item::untracked(raw.paddr, raw.level, raw.prop);
    return Item::tracked(TrackedMemory<T>::from_raw(raw.paddr, raw.level), raw.prop);
  }
  // A borrowed view of the item in a PTE; takes no reference (valid while the PTE stays).
  static ItemRef item_ref_from_raw(const RawItem& raw) noexcept {
    PageProperty p = raw.prop;
    p.priv_flags &= ~PrivilegedPageFlags::AVAIL1;
    return ItemRef{is_tracked(raw), raw.paddr, raw.level, p};
  }
};

}  // namespace vmspace
