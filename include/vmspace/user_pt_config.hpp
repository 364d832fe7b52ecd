// UserPtConfig: the page-table configuration of a VmSpace (OSTD `ostd/src/mm/vm_space.rs`,
// `UserPtConfig` and `VmItem`; docs/page_table.md, "AVAIL1: tracked or not").
//
// A user table manages root indices 0..256 (VA 0 ..= 0x7fff_ffff_ffff) of an x86-64 4-level
// table; indices 256..512 are borrowed from the kernel table. An item is either
//   - tracked: an untyped segment whose frames the PTE owns (one reference per frame). OSTD
//     maps only 4 KiB frames; we also map a 2 MiB-aligned 512-frame segment as one huge leaf,
//     and a huge leaf splits into 512 4 KiB leaves that each own one frame, so the reference
//     count of every frame always equals handles + PTEs covering it + segment shares; or
//   - untracked: physical memory the table does not own (I/O memory), at any level.
// AVAIL1 in the PTE marks untracked items, as in OSTD. Item properties never carry AVAIL1.
#pragma once

#include <cstddef>
#include <cstdint>

#include <vmspace/frame.hpp>
#include <vmspace/page_table/item.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/pte/x86_64.hpp>
#include <vmspace/segment.hpp>

namespace vmspace {

// The level whose page size equals `bytes` in a 4 KiB/512-entry format, or 0 if none (levels
// 1..3: 4 KiB, 2 MiB, 1 GiB).
constexpr PagingLevel level_of_size(std::uint64_t bytes) noexcept {
  for (PagingLevel l = 1; l <= 3; ++l) {
    if (bytes == (std::uint64_t{4096} << (9u * (l - 1u)))) return l;
  }
  return 0;
}

// User tables track untyped segments: a 4 KiB frame or a 2 MiB-aligned 512-frame segment per
// leaf; a huge leaf's pieces each take back one frame of it.
template <>
struct TrackedMemory<USegment> {
  // The leaf level `segment` maps as: 1 for 4 KiB, 2 for 2 MiB, 0 for other sizes (cannot be one
  // leaf).
  static PagingLevel level(const USegment& segment) noexcept {
    return level_of_size(segment.size());
  }
  // Takes back the page_size(level) bytes at `pa` that a leaf owns (one reference per frame).
  // Precondition: those references were leaked into the PTE by into_raw.
  static USegment from_raw(Paddr pa, PagingLevel level) noexcept {
    const std::uint64_t size = std::uint64_t{kPageSize} << (9u * (level - 1u));
    return USegment::from_raw(PaRange{pa, pa + size});
  }
};

// An owned user mapping (tracked: UserItem::tracked(segment or frame, prop); untracked:
// UserItem::untracked(pa, level, prop)).
using UserItem = PtItem<USegment>;
// A borrowed view of a user mapping; frame() borrows the first frame of a tracked one.
using UserItemRef = PtItemRef<USegment>;

// AVAIL1 marks untracked items, as in OSTD.
struct UserPtConfig : PtItemCodec<USegment, Avail1Marks::Untracked> {
  // User tables use the x86-64 entry format.
  using Pte = X86_64Pte;
  // The lower half of the root (entries 0..255): user space.
  static constexpr std::size_t kTopLevelIndexStart = 0;
  // End (exclusive) of the root entries user tables manage.
  static constexpr std::size_t kTopLevelIndexEnd = 256;
  // Root entries of user tables may be removed (unmapping frees whole sub-trees).
  static constexpr bool kTopLevelCanUnmap = true;
  // Leaves up to 2 MiB.
  static constexpr PagingLevel kHighestTranslationLevel = Pte::Consts::kHighestTranslationLevel;
};
static_assert(PageTableConfig<UserPtConfig>);

}  // namespace vmspace
