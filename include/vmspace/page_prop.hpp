// Page properties: permission flags, cache policy and the privileged bits only the library
// may set (OSTD `ostd/src/mm/page_prop.rs`, `PageProperty`; the values are OSTD's).
#pragma once

#include <cstdint>
#include <ostream>

#include <vmspace/bitflags.hpp>

namespace vmspace {

// Permission and status bits a client may set on a mapping.
enum class PageFlags : std::uint8_t {
  None = 0,
  R = 0x01,
  W = 0x02,
  X = 0x04,
  RW = 0x03,
  RX = 0x05,
  RWX = 0x07,
  ACCESSED = 0x08,  // Set by the (software) MMU on any access.
  DIRTY = 0x10,     // Set by the (software) MMU on a write.
  AVAIL2 = 0x80,    // Software bit, free for clients.
};
VMS_BITFLAGS(PageFlags)

// Bits reserved to the library. VmSpace clients can never set or clear them: USER is forced
// on user mappings, AVAIL1 marks tracked/untracked items (its meaning depends on the
// PageTableConfig), GLOBAL marks kernel mappings, SHARED is x86 TDX only.
enum class PrivilegedPageFlags : std::uint8_t {
  None = 0,
  USER = 0x01,
  GLOBAL = 0x02,
  AVAIL1 = 0x40,
  SHARED = 0x80,
};
VMS_BITFLAGS(PrivilegedPageFlags)

// Flags on intermediate (page-table) PTEs. The library always writes None.
enum class PageTableFlags : std::uint8_t {
  None = 0,
  AVAIL1 = 0x40,
  AVAIL2 = 0x80,
};
VMS_BITFLAGS(PageTableFlags)

// AMD64 memory types. Not every PTE format can encode every policy (x86 leaf PTEs cannot
// encode WriteProtected); formats report that through `can_encode`.
enum class CachePolicy : std::uint8_t {
  Uncacheable,
  WriteCombining,
  WriteProtected,
  Writethrough,
  Writeback,
};

// How a page is mapped (OSTD `ostd/src/mm/page_prop.rs`, `PageProperty`): access flags, cache
// policy and the privileged bits only the library and kernels set.
struct PageProperty {
  // Access permissions and the ACCESSED/DIRTY/AVAIL2 bits.
  PageFlags flags = PageFlags::None;
  // Memory type of the mapping.
  CachePolicy cache = CachePolicy::Writeback;
  // USER, GLOBAL, SHARED and AVAIL1; user mappings get USER only.
  PrivilegedPageFlags priv_flags = PrivilegedPageFlags::None;

  // A user mapping: USER is set, every other privileged bit clear (OSTD's only public
  // constructor).
  static constexpr PageProperty new_user(PageFlags flags, CachePolicy cache) noexcept {
    return PageProperty{flags, cache, PrivilegedPageFlags::USER};
  }
  // A property with explicit privileged bits, for kernel mappings and tests.
  static constexpr PageProperty new_with(PageFlags flags, CachePolicy cache,
                                         PrivilegedPageFlags priv) noexcept {
    return PageProperty{flags, cache, priv};
  }

  friend constexpr bool operator==(const PageProperty&, const PageProperty&) = default;
};

// Prints the set flags by name (for messages and test failures).
std::ostream& operator<<(std::ostream& os, PageFlags f);
// Prints the set privileged flags by name.
std::ostream& operator<<(std::ostream& os, PrivilegedPageFlags f);
// Prints the policy's name.
std::ostream& operator<<(std::ostream& os, CachePolicy c);
// Prints flags, cache policy and privileged flags.
std::ostream& operator<<(std::ostream& os, const PageProperty& p);

}  // namespace vmspace
