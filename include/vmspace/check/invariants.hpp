// Invariant checks: the well-formedness invariants the formal specifications state for
// OSTD's page tables, frame metadata and TLBs (vostd's page-table tree and reference-count
// invariants, its TLB model), as executable checks for tests, fuzzers, stress runs and a
// teaching OS's own test suite. Every check appends violations to a CheckReport; an empty
// report means the invariants hold.
//
// Checks read shared state with lock-free loads and are exact only at quiescent points: no
// cursor is changing the tables involved, no flush is pending, and (for the TLB check) every
// unmap has been dispatched. Run them between operations, not concurrently with them.
//
//   check_page_table      tree shape (every node reachable once, node metadata is this
//                         config's, node levels consistent, every node referenced exactly once,
//                         no stray or locked node reachable), nr_children = number of present
//                         entries (root: in its own slice), leaves aligned to their size, at a
//                         level <= kHighestTranslationLevel, inside physical memory when tracked,
//                         tracked frames in use and never UNIQUE, page-table or free;
//                         PA overlaps as warnings.
//   check_user_table      the above, plus: root entries 256..512 are exactly the kernel
//                         table's (the borrowed half).
//   check_frame_slots     every MetaSlot is in a legal refcount state.
//   check_refcount_law    count = live handles + owning PTEs + segment shares for every frame in
//                         use (exact with the handle ledger, see ledger.hpp;
//                         otherwise the one-sided count >= owning PTEs).
//   check_tlb_coherence   every CPU's cached translations agree with its active page table
//                         (TLB ⊆ PT after every dispatch).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <vmspace/check/interpret.hpp>
#include <vmspace/check/ledger.hpp>
#include <vmspace/internal/pt_walk.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/user_pt_config.hpp>

namespace vmspace::check {

// One broken (or, as a warning, suspicious) invariant.
struct Violation {
  std::string rule;    // e.g. "nr_children" — the invariant's short name
  std::string detail;  // what was found, with addresses
};

// What a check found: violations (the check failed) and warnings (allowed but worth knowing). Not
// thread-safe.
class CheckReport {
 public:
  // Records a violation of `rule`.
  void add(std::string rule, std::string detail) {
    violations_.push_back({std::move(rule), std::move(detail)});
  }
  // Records a warning about `rule`; warnings do not affect ok().
  void warn(std::string rule, std::string detail) {
    warnings_.push_back({std::move(rule), std::move(detail)});
  }
  // Whether no violation was found.
  bool ok() const noexcept { return violations_.empty(); }
  // The violations, in the order found.
  const std::vector<Violation>& violations() const noexcept { return violations_; }
  // The warnings, in the order found.
  const std::vector<Violation>& warnings() const noexcept { return warnings_; }
  // All violations (then warnings), one per line, for test failure messages.
  std::string to_string() const;

 private:
  std::vector<Violation> violations_;
  std::vector<Violation> warnings_;
};

// Owning page-table entries per frame (leaves count every frame they cover; page-table entries
// count the child node), accumulated over any number of tables.
using RawRefs = std::unordered_map<Paddr, std::uint64_t>;

// What check_page_table and check_user_table additionally require.
struct TableCheckOptions {
  // Report PA-overlapping leaves as warnings (OSTD allows one frame at several addresses).
  bool warn_pa_overlap = true;
  // Require every reachable node to be unlocked (true at quiescent points).
  bool expect_unlocked = true;
};

namespace internal {

std::string hex(std::uint64_t v);
// Checks the slot of a tracked data frame referenced by a leaf.
void check_tracked_frame(Paddr pa, CheckReport& report);

template <PageTableConfig C>
bool is_tracked(const RawItem& raw) {
  if constexpr (requires { C::is_tracked(raw); }) {
    return C::is_tracked(raw);
  } else {
    return false;
  }
}

template <PageTableConfig C>
struct TableWalker {
  using Pte = typename C::Pte;
  using K = ConstsOf<C>;
  CheckReport& report;
  RawRefs* refs;
  const TableCheckOptions& options;
  std::unordered_set<Paddr> seen;
  std::vector<std::pair<Paddr, Paddr>> pa_ranges;  // for overlap warnings

  // The node checks; false (its entries are not walked) for a node reached twice or one
  // without this config's metadata.
  bool enter(Paddr pa, PagingLevel level) {
    if (!seen.insert(pa).second) {
      report.add("tree_shape", "node " + hex(pa) + " is reachable more than once");
      return false;
    }
    MetaSlot* slot = meta_slot(pa);
    if (slot->vtable != meta_vtable<PageTablePageMeta<C>>()) {
      report.add("node_metadata",
                 "node " + hex(pa) + " does not carry this config's page-table metadata");
      return false;
    }
    const auto& meta = vmspace::internal::NodeView<C>{pa}.meta();
    if (meta.level != level) {
      report.add("node_level", "node " + hex(pa) + " has level " + std::to_string(meta.level) +
                                   " at tree level " + std::to_string(level));
    }
    if (meta.stray)
      report.add("stray_reachable", "node " + hex(pa) + " is marked stray but reachable");
    if (options.expect_unlocked &&
        boost::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(meta.lock))
                .load(boost::memory_order_acquire) != 0) {
      report.add("node_locked", "node " + hex(pa) + " is locked at a quiescent point");
    }
    const std::uint64_t rc = slot->ref_count_ref().load(boost::memory_order_acquire);
    if (rc != 1) {
      report.add("node_refcount", "node " + hex(pa) + " has reference count " + std::to_string(rc) +
                                      " (exactly one owner expected)");
    }
    return true;
  }

  bool child(const vmspace::internal::PteAt& e) {
    if (refs) ++(*refs)[Pte::paddr(e.raw, e.level)];
    return true;
  }

  void leaf(const vmspace::internal::PteAt& e) {
    if (e.level == 1 && !Pte::is_leaf(e.raw, e.level)) {
      report.add("leaf_kind", "level-1 entry at " + hex(e.va) + " is not a leaf");
      return;
    }
    leaf(Pte::decode(e.raw, e.level), e.level, e.va);
  }

  void leave(Paddr pa, PagingLevel, std::size_t present) {
    const auto& meta = vmspace::internal::NodeView<C>{pa}.meta();
    if (present != meta.nr_children) {
      report.add("nr_children", "node " + hex(pa) + " counts " + std::to_string(meta.nr_children) +
                                    " children but has " + std::to_string(present) +
                                    " present entries");
    }
  }

  void leaf(const PteScalar& s, PagingLevel level, Vaddr va) {
    const std::uint64_t size = page_size<K>(level);
    if (level > C::kHighestTranslationLevel) {
      report.add("leaf_level", "leaf at " + hex(va) + " sits at level " + std::to_string(level) +
                                   " above the highest translation level");
    }
    if (!is_aligned(s.paddr, size) || !is_aligned(va, size)) {
      report.add("leaf_alignment",
                 "leaf at " + hex(va) + " -> " + hex(s.paddr) + " is not aligned to its size");
    }
    const RawItem raw{s.paddr, level, s.prop};
    if (is_tracked<C>(raw)) {
      if (s.paddr + size > max_paddr() || s.paddr + size < s.paddr) {
        report.add("leaf_bounds", "tracked leaf at " + hex(va) + " maps beyond physical memory");
        return;
      }
      for (Paddr f = s.paddr; f < s.paddr + size; f += kPageSize) {
        check_tracked_frame(f, report);
        if (refs) ++(*refs)[f];
      }
    }
    if (options.warn_pa_overlap) pa_ranges.emplace_back(s.paddr, s.paddr + size);
  }

  void finish() {
    if (!options.warn_pa_overlap) return;
    std::sort(pa_ranges.begin(), pa_ranges.end());
    for (std::size_t i = 1; i < pa_ranges.size(); ++i) {
      if (pa_ranges[i].first < pa_ranges[i - 1].second) {
        report.warn("pa_overlap",
                    "physical range " + hex(pa_ranges[i].first) + " is mapped more than once");
      }
    }
  }
};

}  // namespace internal

// Checks one table. If `refs` is given, adds the table's owning references to it (for
// check_refcount_law). The table's root is expected to be owned by exactly its PageTable.
template <PageTableConfig C>
void check_page_table(const PageTable<C>& pt, CheckReport& report, RawRefs* refs = nullptr,
                      const TableCheckOptions& options = {}) {
  using Pte = typename C::Pte;
  using K = ConstsOf<C>;
  internal::TableWalker<C> w{report, refs, options, {}, {}};
  vmspace::internal::walk_table<C>(pt.root_paddr(), w);
  // Root entries outside the config's slice must be absent (unless borrowed: check_user_table).
  if constexpr (!std::is_same_v<C, UserPtConfig>) {
    const vmspace::internal::NodeView<C> root{pt.root_paddr()};
    for (std::size_t i = 0; i < kNrEntries<K>; ++i) {
      if (i >= C::kTopLevelIndexStart && i < C::kTopLevelIndexEnd) continue;
      if (Pte::is_present(root.load_acquire(i), K::kNrLevels)) {
        report.add("root_slice",
                   "root entry " + std::to_string(i) + " outside the config's slice is present");
      }
    }
  }
  w.finish();
}

// check_page_table for a VmSpace table, plus the borrowed kernel half.
void check_user_table(const PageTable<UserPtConfig>& pt, CheckReport& report,
                      RawRefs* refs = nullptr, const TableCheckOptions& options = {});

// Every MetaSlot of physical memory is in a legal state of the refcount state machine.
void check_frame_slots(CheckReport& report);

// The refcount law for every frame in use, given the owning references of every live table
// (accumulate them with check_page_table / check_user_table, including the kernel table).
// With the handle ledger (ledger_enabled()): count == handles + refs exactly, and every frame
// in use is accounted for. Without it: count >= refs and count >= 1 for every referenced frame.
// Precondition: a quiescent point with no RcuDrop or flusher pending (call rcu_barrier() first),
// because handles held by pending callbacks count as handles in the ledger only.
void check_refcount_law(const RawRefs& refs, CheckReport& report);

// Every valid entry of every CPU's software TLB translates its page exactly as the CPU's
// current page table does (present, readable, same frame). Precondition: quiescent, with every
// flush dispatched.
void check_tlb_coherence(CheckReport& report);

}  // namespace vmspace::check
