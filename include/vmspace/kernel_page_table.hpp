// The kernel page table (OSTD `kspace`, reference/ostd-mm.md §2.21, §3.10, §3.11).
//
// KernelPtConfig manages root indices 256..512 (the upper half). At boot a level-3 node is
// pre-allocated under every one of those root entries, so the entries never change and every
// user table can share them (create_user_page_table copies the 256 root entries without taking
// references). All of physical memory is mapped at kLinearMappingBaseVaddr with the largest
// pages (untracked, RW, GLOBAL, write-back).
//
// Items are either tracked frames of any metadata type (base pages only) or untracked physical
// ranges (any level up to the highest translation level). AVAIL1 set in a PTE marks a TRACKED
// item here (the opposite of UserPtConfig), and item properties never carry AVAIL1 (vostd
// issue #625 was about losing track of exactly this on the way back).
#pragma once

#include <cstddef>
#include <variant>

#include <vmspace/frame.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/pte/x86_64.hpp>
#include <vmspace/user_pt_config.hpp>

namespace vmspace {

class KernelItem {
 public:
  static KernelItem tracked(DynFrame frame, PageProperty prop) noexcept {
    return KernelItem(std::move(frame), strip(prop));
  }
  static KernelItem untracked(Paddr pa, PagingLevel level, PageProperty prop) noexcept {
    return KernelItem(Untracked{pa, level}, strip(prop));
  }
  KernelItem(KernelItem&&) noexcept = default;
  KernelItem& operator=(KernelItem&&) noexcept = default;

  bool is_tracked() const noexcept { return std::holds_alternative<DynFrame>(what_); }
  const DynFrame& frame() const noexcept { return std::get<DynFrame>(what_); }
  DynFrame take_frame() && noexcept { return std::move(std::get<DynFrame>(what_)); }
  Paddr paddr() const noexcept {
    return is_tracked() ? frame().paddr() : std::get<Untracked>(what_).pa;
  }
  PagingLevel level() const noexcept {
    return is_tracked() ? PagingLevel{1} : std::get<Untracked>(what_).level;
  }
  const PageProperty& prop() const noexcept { return prop_; }

 private:
  struct Untracked {
    Paddr pa;
    PagingLevel level;
  };
  static constexpr PageProperty strip(PageProperty p) noexcept {
    p.priv_flags &= ~PrivilegedPageFlags::AVAIL1;
    return p;
  }
  KernelItem(std::variant<DynFrame, Untracked> what, PageProperty prop) noexcept
      : what_(std::move(what)), prop_(prop) {}

  std::variant<DynFrame, Untracked> what_;
  PageProperty prop_;
};

struct KernelItemRef {
  bool tracked = false;
  Paddr paddr = 0;
  PagingLevel level = 1;
  PageProperty prop{};
};

struct KernelPtConfig {
  using Pte = X86_64Pte;
  static constexpr std::size_t kTopLevelIndexStart = 256;
  static constexpr std::size_t kTopLevelIndexEnd = 512;
  static constexpr bool kTopLevelCanUnmap = false;
  static constexpr PagingLevel kHighestTranslationLevel = Pte::Consts::kHighestTranslationLevel;
  using Item = KernelItem;
  using ItemRef = KernelItemRef;

  static RawItem item_raw_info(const Item& item) noexcept {
    PageProperty p = item.prop();
    if (item.is_tracked()) p.priv_flags |= PrivilegedPageFlags::AVAIL1;
    return RawItem{item.paddr(), item.level(), p};
  }
  static RawItem item_into_raw(Item&& item) noexcept {
    RawItem raw = item_raw_info(item);
    if (item.is_tracked()) (void)std::move(item).take_frame().into_raw();
    return raw;
  }
  static Item item_from_raw(const RawItem& raw) noexcept {
    if (has(raw.prop.priv_flags, PrivilegedPageFlags::AVAIL1)) {
      return Item::tracked(DynFrame::from_raw(raw.paddr), raw.prop);
    }
    return Item::untracked(raw.paddr, raw.level, raw.prop);
  }
  static bool is_tracked(const RawItem& raw) noexcept {
    return has(raw.prop.priv_flags, PrivilegedPageFlags::AVAIL1);
  }
  static ItemRef item_ref_from_raw(const RawItem& raw) noexcept {
    PageProperty p = raw.prop;
    const bool tracked = has(p.priv_flags, PrivilegedPageFlags::AVAIL1);
    p.priv_flags &= ~PrivilegedPageFlags::AVAIL1;
    return ItemRef{tracked, raw.paddr, raw.level, p};
  }
};
static_assert(PageTableConfig<KernelPtConfig>);

// Creates a kernel-style table: an empty root with a level-(N-1) node pre-allocated under every
// root entry of the config's range (OSTD's new_kernel_page_table). Errors: NoMemory.
Result<PageTable<KernelPtConfig>, PageTableError> new_kernel_page_table() noexcept;

// Creates a user table sharing `kernel`'s root entries 256..512: the new root's upper half
// points at the same level-3 nodes, without references (they live forever, and a user cursor
// can never reach them). Precondition: `kernel` was made by new_kernel_page_table and outlives
// the result. Errors: NoMemory.
Result<PageTable<UserPtConfig>, PageTableError> create_user_page_table(
    const PageTable<KernelPtConfig>& kernel) noexcept;

// The machine's kernel page table, built at boot: the shared upper half plus the linear mapping
// of all physical memory. Boots with defaults if needed. Lives until process exit.
const PageTable<KernelPtConfig>& kernel_page_table();

// Maps [pa, pa + len) at `va` with the largest pages that fit (OSTD's largest_pages), through
// `cursor` positioned at va. Preconditions: all three 4 KiB-aligned, inside the cursor's range.
// Errors: as CursorMut::map; on error the pages mapped so far stay mapped.
Result<void, PageTableError> map_untracked_largest(CursorMut<KernelPtConfig>& cursor, Paddr pa,
                                                   std::uint64_t len, PageProperty prop) noexcept;

}  // namespace vmspace
