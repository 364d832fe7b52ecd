// The kernel page table (OSTD `ostd/src/mm/kspace/mod.rs`, `KernelPtConfig` and
// `init_kernel_page_table`; docs/page_table.md, "User slots 0–255, kernel slots 256–511").
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

#include <vmspace/frame.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/page_table/item.hpp>
#include <vmspace/pte/x86_64.hpp>
#include <vmspace/user_pt_config.hpp>

namespace vmspace {

// Kernel tables track frames of any metadata type, base pages only.
template <>
struct TrackedMemory<DynFrame> {
  // Always 1: a kernel frame is mapped as one 4 KiB leaf.
  static PagingLevel level(const DynFrame&) noexcept { return 1; }
  // Takes back the frame reference a leaf at `pa` owns. Precondition: into_raw leaked it into the
  // PTE.
  static DynFrame from_raw(Paddr pa, PagingLevel) noexcept { return DynFrame::from_raw(pa); }
};

// An owned kernel mapping (KernelItem::tracked(frame, prop), KernelItem::untracked(pa, level,
// prop)) and its borrowed view.
using KernelItem = PtItem<DynFrame>;
// A borrowed view of a kernel mapping, valid while its PTE stays.
using KernelItemRef = PtItemRef<DynFrame>;

// AVAIL1 marks tracked items, the opposite of UserPtConfig.
struct KernelPtConfig : PtItemCodec<DynFrame, Avail1Marks::Tracked> {
  // Kernel tables use the x86-64 entry format.
  using Pte = X86_64Pte;
  // The upper half of the root (entries 256..511): kernel space.
  static constexpr std::size_t kTopLevelIndexStart = 256;
  // End (exclusive) of the root entries kernel tables manage.
  static constexpr std::size_t kTopLevelIndexEnd = 512;
  // Root entries are never removed: user tables share the level-3 nodes under them.
  static constexpr bool kTopLevelCanUnmap = false;
  // Leaves up to 2 MiB.
  static constexpr PagingLevel kHighestTranslationLevel = Pte::Consts::kHighestTranslationLevel;
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
