// UserPtConfig: the page-table configuration of a VmSpace (OSTD's UserPtConfig / VmItem,
// reference/ostd-mm.md §2.4 and §3.11).
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
#include <optional>
#include <utility>
#include <variant>

#include <vmspace/frame.hpp>
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

// An owned user mapping.
class UserItem {
 public:
  // Tracked untyped frames. Mappable when the segment is 4 KiB or 2 MiB (aligned) large.
  static UserItem tracked(USegment segment, PageProperty prop) noexcept {
    return UserItem(std::move(segment), strip(prop));
  }
  static UserItem tracked(UFrame frame, PageProperty prop) noexcept {
    return UserItem(USegment(std::move(frame)), strip(prop));
  }
  // Untracked physical memory (I/O memory) of one page at `level`.
  static UserItem untracked(Paddr pa, PagingLevel level, PageProperty prop) noexcept {
    return UserItem(Untracked{pa, level}, strip(prop));
  }

  UserItem(UserItem&&) noexcept = default;
  UserItem& operator=(UserItem&&) noexcept = default;

  bool is_tracked() const noexcept { return std::holds_alternative<USegment>(what_); }
  const USegment& segment() const noexcept { return std::get<USegment>(what_); }
  USegment take_segment() && noexcept { return std::move(std::get<USegment>(what_)); }
  Paddr paddr() const noexcept {
    return is_tracked() ? segment().paddr() : std::get<Untracked>(what_).pa;
  }
  // 0 when a tracked segment has no mappable size.
  PagingLevel level() const noexcept {
    return is_tracked() ? level_of_size(segment().size()) : std::get<Untracked>(what_).level;
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
  UserItem(std::variant<USegment, Untracked> what, PageProperty prop) noexcept
      : what_(std::move(what)), prop_(prop) {}

  std::variant<USegment, Untracked> what_;
  PageProperty prop_;
};

// A borrowed view of a user mapping, valid while its cursor (or RCU section) keeps the PTE.
struct UserItemRef {
  bool tracked = false;
  Paddr paddr = 0;
  PagingLevel level = 1;
  PageProperty prop{};
  // The first frame of a tracked mapping. Precondition: tracked.
  FrameRef<AnyUFrameMeta> frame() const noexcept { return FrameRef<AnyUFrameMeta>::borrow_paddr(paddr); }
};

struct UserPtConfig {
  using Pte = X86_64Pte;
  static constexpr std::size_t kTopLevelIndexStart = 0;
  static constexpr std::size_t kTopLevelIndexEnd = 256;
  static constexpr bool kTopLevelCanUnmap = true;
  static constexpr PagingLevel kHighestTranslationLevel = Pte::Consts::kHighestTranslationLevel;
  using Item = UserItem;
  using ItemRef = UserItemRef;

  static RawItem item_raw_info(const Item& item) noexcept {
    PageProperty p = item.prop();
    if (!item.is_tracked()) p.priv_flags |= PrivilegedPageFlags::AVAIL1;
    return RawItem{item.paddr(), item.level(), p};
  }
  static RawItem item_into_raw(Item&& item) noexcept {
    RawItem raw = item_raw_info(item);
    if (item.is_tracked()) (void)std::move(item).take_segment().into_raw();
    return raw;
  }
  static Item item_from_raw(const RawItem& raw) noexcept {
    if (has(raw.prop.priv_flags, PrivilegedPageFlags::AVAIL1)) {
      return Item::untracked(raw.paddr, raw.level, raw.prop);
    }
    const std::uint64_t size = std::uint64_t{kPageSize} << (9u * (raw.level - 1u));
    return Item::tracked(USegment::from_raw(PaRange{raw.paddr, raw.paddr + size}), raw.prop);
  }
  // Whether a raw leaf owns its frames (for the invariant checker).
  static bool is_tracked(const RawItem& raw) noexcept {
    return !has(raw.prop.priv_flags, PrivilegedPageFlags::AVAIL1);
  }
  static ItemRef item_ref_from_raw(const RawItem& raw) noexcept {
    PageProperty p = raw.prop;
    const bool tracked = !has(p.priv_flags, PrivilegedPageFlags::AVAIL1);
    p.priv_flags &= ~PrivilegedPageFlags::AVAIL1;
    return ItemRef{tracked, raw.paddr, raw.level, p};
  }
};
static_assert(PageTableConfig<UserPtConfig>);

}  // namespace vmspace
