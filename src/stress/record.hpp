// Internal: what workers record while they hold cursors and copy, for the checker.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <vmspace/addr.hpp>
#include <vmspace/page_prop.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/stress.hpp>

namespace vmspace::stress::internal {

enum class RecKind : std::uint8_t { Open, Close, Query, FindNext, Jump, Map, Unmap, Protect };
const char* to_string(RecKind k) noexcept;

// One cursor event. Tickets are drawn while the cursor is held: Open after the locks are taken,
// Close before they are released, operations after the operation completed.
struct Record {
  std::uint64_t ticket = 0;
  std::uint64_t cursor = 0;  // run-wide cursor id
  VaRange range{};           // the cursor's range (Open: the requested range)
  Vaddr before = 0;          // cursor position before the operation
  Vaddr after = 0;           // and after it

  // Arguments.
  std::uint64_t len = 0;   // find_next, unmap, protect
  Vaddr target = 0;        // jump
  Paddr pa = 0;            // map: the item's physical base
  PageProperty prop{};     // map: the raw property the PTE stores
  ProtectChange change{};  // protect

  // Observed result.
  bool ok = true;
  PageTableError pt_error = PageTableError::InvalidVaddr;  // when !ok: the finer cause
  Error error = Error::InvalidArgs;                        // when !ok: what VmSpace returned
  bool has_value = false;   // query: something mapped; find_next: found; protect: changed
  VaRange out_range{};      // query: the entry's range; protect: the changed range
  Vaddr out_va = 0;         // find_next
  std::uint64_t count = 0;  // unmap
  Paddr out_pa = 0;         // query
  PagingLevel out_level = 0;
  PageProperty out_prop{};

  std::uint16_t space = 0;
  std::uint8_t thread = 0;
  RecKind kind = RecKind::Open;
  PagingLevel level = 1;  // map: 1 or 2
  bool mut = false;       // Open: CursorMut
  bool nested = false;    // Open: the thread held another cursor of this space
  bool try_lock = false;  // Open: try_cursor*
};

// A word-run of a read: `count` consecutive 8-byte words starting at `va` that decode to
// consecutive words of one write (or are all zero: thread == 0).
struct ReadRun {
  Vaddr va = 0;
  std::uint32_t count = 0;
  std::uint8_t thread = 0;  // writer thread + 1; 0: zero words
  std::uint64_t seq = 0;
  std::uint32_t first_idx = 0;
};

// One copy. Tickets bracket it: `start` before the first access, `end` after the last.
struct CopyRecord {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  Vaddr va = 0;
  std::uint64_t len = 0;
  std::uint64_t copied = 0;
  bool faulted = false;
  bool write = false;
  std::uint16_t space = 0;
  std::uint8_t thread = 0;
  std::uint64_t seq = 0;       // write: its sequence number
  std::size_t runs_begin = 0;  // read: [runs_begin, runs_end) in the thread's run buffer
  std::size_t runs_end = 0;
};

// A write as the readers' check needs it (kept for the whole run).
struct WriteInfo {
  std::uint64_t start = 0;  // ticket
  Vaddr va = 0;
  std::uint64_t copied = 0;
  std::uint16_t space = 0;
};

// The word encoding: bits 63..56 thread + 1, 55..16 sequence number, 15..0 word index.
constexpr std::uint64_t encode_word(unsigned thread, std::uint64_t seq,
                                    std::uint32_t idx) noexcept {
  return (std::uint64_t{thread + 1u} << 56) | ((seq & ((std::uint64_t{1} << 40) - 1)) << 16) | idx;
}
struct DecodedWord {
  std::uint8_t thread;  // writer + 1; 0 for a zero word
  std::uint64_t seq;
  std::uint32_t idx;
};
constexpr DecodedWord decode_word(std::uint64_t w) noexcept {
  return DecodedWord{static_cast<std::uint8_t>(w >> 56), (w >> 16) & ((std::uint64_t{1} << 40) - 1),
                     static_cast<std::uint32_t>(w & 0xffff)};
}
inline constexpr std::size_t kMaxCopyBytes = 64 * 1024;

// Rounds up to a power-of-two alignment, saturating at the largest aligned value.
constexpr std::uint64_t align_up_sat(std::uint64_t x, std::uint64_t align) noexcept {
  return checked_align_up(x, align).value_or(align_down(UINT64_MAX, align));
}

// Readable one-line descriptions.
std::string describe(const Record& r);
std::string describe(const CopyRecord& c);
std::string hex(std::uint64_t v);
std::string describe(const PageProperty& p);
std::string describe(const ProtectChange& c);

}  // namespace vmspace::stress::internal
