// The abstract model of a page table: the high-level state machine of the formal page-table
// specifications (vostd's abstract page-table view and its map/unmap/protect specs;
// verified-nrkernel's `hlspec`), as executable code.
//
// The state is a set of mappings — virtual range → physical range, page size, property —
// pairwise VA-disjoint. Operations are defined on that set exactly as the specifications define
// them (with the intended semantics where the specs are known to be weak, e.g. vostd's map_spec
// replacing whatever lies in a huge page's range):
//   map       adds a mapping; an error if its range overlaps any mapping (a page-table node that
//             maps nothing is not a mapping).
//   unmap     splits every huge mapping that straddles the window's ends, one level at a time,
//             and removes every piece inside the window.
//   protect   finds the next mapping touching the window, splits it until the piece at the
//             window's first covered address lies inside the window, and changes that piece only.
//   query     returns the mapping containing an address.
// ModelCursor adds the cursor: its position, locked range and guard level, and the library's
// argument errors, so that a model cursor and a real cursor given the same calls return the
// same results. Results that depend on page-table structure and not on the mapping set (the
// range of an absent entry, how many fragments an unmap takes) are not predicted; use
// agrees_with() to compare what is determined.
//
// Properties are compared in their raw form (what the PTE stores: AVAIL1 marks included).
// The software MMU sets ACCESSED/DIRTY behind the model's back, so comparisons mask them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <vmspace/addr.hpp>
#include <vmspace/page_prop.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/result.hpp>

namespace vmspace::check {

// Bytes mapped by one entry at `level` in a 512-entry, 4 KiB-page format.
constexpr std::uint64_t model_page_size(PagingLevel level) noexcept {
  return std::uint64_t{4096} << (9u * (level - 1u));
}

// One leaf of the abstract model: [va, va + size()) maps to [pa, pa + size()) with `prop`.
struct Mapping {
  // Start address, aligned to size().
  Vaddr va = 0;
  // Leaf level; fixes the size (model_page_size).
  PagingLevel level = 1;
  // Physical start, aligned to size().
  Paddr pa = 0;
  // The raw property, AVAIL1 (tracked/untracked marker) included.
  PageProperty prop{};

  // Bytes mapped: model_page_size(level).
  std::uint64_t size() const noexcept { return model_page_size(level); }
  // Last byte (inclusive): a mapping may end at 2^64 in a kernel-style table.
  Vaddr last() const noexcept { return va + (size() - 1); }
  // Whether `x` lies in the mapping.
  bool contains(Vaddr x) const noexcept { return x >= va && x <= last(); }

  friend bool operator==(const Mapping&, const Mapping&) = default;
};
// Prints the mapping for messages and test failures.
std::ostream& operator<<(std::ostream& os, const Mapping& m);

// Mask for comparing properties: ACCESSED/DIRTY are set by the software MMU.
PageProperty without_access_bits(PageProperty p) noexcept;

// What the model needs to know about a PageTableConfig.
struct ModelConfig {
  // Levels of the tree (the root's level).
  PagingLevel nr_levels = 4;
  // Highest level a leaf may be mapped at (kHighestTranslationLevel).
  PagingLevel highest_level = 2;
  // Whether unmap may remove root-level entries (PageTableConfig::kTopLevelCanUnmap).
  bool top_level_can_unmap = true;
  Vaddr first = 0;  // inclusive bounds of the managed range
  // Last managed address (inclusive).
  Vaddr last = 0;
  Paddr paddr_limit = ~Paddr{0};  // exclusive; from the PTE format when it has one
  // Whether the PTE format can encode a property (map and protect refuse others).
  std::function<bool(const PageProperty&)> can_encode;
};

template <PageTableConfig C>
// The model configuration of page-table configuration C (levels, managed range, PTE limits).
ModelConfig model_config() {
  ModelConfig m;
  m.nr_levels = ConstsOf<C>::kNrLevels;
  m.highest_level = C::kHighestTranslationLevel;
  m.top_level_can_unmap = C::kTopLevelCanUnmap;
  constexpr auto b = vaddr_bounds<C>();
  m.first = b.first;
  m.last = b.last;
  if constexpr (requires { C::Pte::kPaddrLimit; }) m.paddr_limit = C::Pte::kPaddrLimit;
  m.can_encode = [](const PageProperty& p) { return C::Pte::can_encode(p); };
  return m;
}

// The abstract state of one page table: a set of non-overlapping mappings, changed by the spec's
// operations. Not thread-safe; single-threaded replay and checking only.
class AbstractModel {
 public:
  // An empty model (nothing mapped).
  explicit AbstractModel(ModelConfig config) : config_(std::move(config)) {}

  // The configuration it was built with.
  const ModelConfig& config() const noexcept { return config_; }
  // Every mapping, keyed by start address.
  const std::map<Vaddr, Mapping>& mappings() const noexcept { return mappings_; }
  // Number of mappings.
  std::size_t size() const noexcept { return mappings_.size(); }

  // The mapping containing `va`.
  std::optional<Mapping> find(Vaddr va) const;
  // The mapping containing `va`, or else the first one starting in (va, last].
  std::optional<Mapping> first_touching(Vaddr va, Vaddr last) const;
  // Whether any mapping overlaps [start, last].
  bool overlaps(Vaddr start, Vaddr last) const;

  // Adds `m`. Returns false (nothing changes) if it overlaps a mapping.
  bool map(const Mapping& m);
  // Replaces the mapping containing `va` by its 512 pieces one level down (same property,
  // proportional physical addresses). Precondition: it exists and has level > 1.
  void split(Vaddr va);
  // The spec's unmap of [start, last]: returns the removed pieces in address order.
  std::vector<Mapping> unmap(Vaddr start, Vaddr last);
  // The spec's protect of the window [start, last]: the changed piece's range, or nullopt.
  // `op` gets the raw property; AVAIL1 is preserved whatever op does. Returns an error (and
  // changes nothing) if the new property cannot be encoded.
  Result<std::optional<Mapping>, PageTableError> protect_next(
      Vaddr start, Vaddr last, const std::function<void(PageProperty&)>& op);

  // The level of the sub-tree a cursor over `range` locks (phase 1 of the locking protocol,
  // computed on the mapping set: a huge leaf over the range stops the descent).
  PagingLevel guard_level(VaRange range) const;

  // Differences between this model and `actual` (e.g. an interpretation), as messages. Empty
  // means equal. Properties are compared without ACCESSED/DIRTY.
  std::vector<std::string> diff(const std::vector<Mapping>& actual) const;

 private:
  ModelConfig config_;
  std::map<Vaddr, Mapping> mappings_;
};

// A cursor on the model with the library's exact argument checks and movement rules.
// Precondition for construction: `range` passed cursor creation (model_check_cursor_range).
class ModelCursor {
 public:
  // A cursor at range.start over `range` of `model`; `model` must outlive it (or be replaced with
  // rebind).
  ModelCursor(AbstractModel& model, VaRange range);

  // Current position.
  Vaddr virt_addr() const noexcept { return va_; }
  // The range the cursor was created over (its barrier).
  VaRange range() const noexcept { return barrier_; }
  // The level of the sub-tree the library would lock for this range (AbstractModel::guard_level at
  // creation).
  PagingLevel guard_level() const noexcept { return guard_level_; }
  // Points the cursor at `model`, a copy of the model it was created on (model-based test
  // frameworks copy their state; the copy's cursor must follow the copied model).
  void rebind(AbstractModel& model) noexcept { model_ = &model; }

  // The mapping at virt_addr() (nullopt: nothing mapped there). Errors: InvalidVaddr.
  Result<std::optional<Mapping>, PageTableError> query() const;
  // Cursor::find_next on the model: same arguments, movement, results and errors.
  Result<std::optional<Vaddr>, PageTableError> find_next(std::uint64_t len);
  // Cursor::jump on the model: same checks and errors.
  Result<void, PageTableError> jump(Vaddr va);
  // CursorMut::map on the model, of `raw_prop` (AVAIL1 included) at `level`: same checks, errors
  // and advance.
  Result<void, PageTableError> map(Paddr pa, PagingLevel level, PageProperty raw_prop);
  // A whole unmap: take_next until nothing is left. Returns the removed pieces.
  Result<std::vector<Mapping>, PageTableError> unmap(std::uint64_t len);
  // CursorMut::protect_next on the model: same splitting, results and errors.
  Result<std::optional<VaRange>, PageTableError> protect_next(
      std::uint64_t len, const std::function<void(PageProperty&)>& op);
  // CursorMut::protect: protect_next repeated until nothing is left in [virt_addr(),
  // virt_addr() + len); returns how many (sub)mappings changed and ends at the window's end.
  // On an error (a property that cannot be encoded) the pieces before the failing mapping have
  // changed and the cursor sits at the failing mapping (its start, or virt_addr() if the cursor
  // is inside it) — where the library's sweep stops, which is not where a failing protect_next
  // would have left it.
  Result<std::size_t, PageTableError> protect(std::uint64_t len,
                                              const std::function<void(PageProperty&)>& op);

  // Puts the cursor at `va` without jump()'s checks (jump refuses the range end, where a real
  // cursor sits after consuming its range). For replaying recorded histories: each recorded
  // operation starts where the real cursor was.
  void set_virt_addr(Vaddr va) noexcept { va_ = va; }

 private:
  std::optional<PageTableError> check_len(std::uint64_t len) const noexcept;

  AbstractModel* model_;
  VaRange barrier_;
  PagingLevel guard_level_;
  Vaddr va_;
};

// Cursor-creation argument checks on a model (same order as the library).
std::optional<PageTableError> model_check_cursor_range(const ModelConfig& config,
                                                       VaRange range) noexcept;

}  // namespace vmspace::check
