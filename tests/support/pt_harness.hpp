// The page-table refinement harness shared by the RapidCheck state machine (tests/model), the
// bounded exhaustive test and the libFuzzer target (tests/fuzz).
//
// A PtModel (the abstract model of check/model.hpp plus at most one model cursor) and a
// PtSystem (a real PageTable of any config plus at most one real cursor) execute the same
// PtOp; step() applies the op to both and returns the differences between what they returned
// (errors, found addresses, ranges, queried items, removed mappings, cursor positions, guard
// levels). check_state() then compares interpret(table) with the model and runs the invariant
// checks. An empty string means "no difference".
//
// Arguments are symbolic (a length "to the end of the cursor's range", an address "one page
// before the range end", a physical address "slot 2, second page of the item's size"), so the
// same op means the same thing whatever state it meets, which keeps shrunk counterexamples and
// fuzzer inputs meaningful. They are resolved against the model cursor; after every step the
// real cursor sits at the same address (step checks it).
//
// Results the model cannot predict from the mapping set alone are checked for consistency
// instead of equality: the range of an absent entry returned by query, which piece a single
// take_next detaches (the post-state is then derived from what it detached), and whether a
// nested cursor in the same table gets its locks (predicted by running the locking protocol of
// page_table.hpp on the real tree, plus the rule that an overlapping nested cursor must fail
// with WouldDeadlock).
//
// The operations and the model side are in pt_harness_ops.hpp; this file has the system side,
// step() and check_state().
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/check/interpret.hpp>
#include <vmspace/check/invariants.hpp>
#include <vmspace/check/model.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/rcu.hpp>

#include "pt_harness_ops.hpp"

namespace vmspace::test {

// ---- the system side ----

template <PageTableConfig C>
class PtSystem {
 public:
  explicit PtSystem(PageTable<C> pt) : pt_(std::move(pt)) {}
  static PtSystem create() { return PtSystem(PageTable<C>::empty().value()); }
  PtSystem(PtSystem&&) noexcept = default;
  PtSystem& operator=(PtSystem&&) = delete;
  ~PtSystem() { close(); }

  const PageTable<C>& table() const noexcept { return pt_; }
  bool has_cursor() const noexcept { return cursor_.has_value(); }
  Cursor<C>& cursor() {
    return std::visit([](auto& c) -> Cursor<C>& { return c; }, *cursor_);
  }
  CursorMut<C>* cursor_mut() { return cursor_ ? std::get_if<CursorMut<C>>(&*cursor_) : nullptr; }

  // Opens the cursor (or, with `keep` false, a nested cursor that is closed again at once) and
  // returns its guard level.
  Result<PagingLevel, PageTableError> open(VaRange range, bool mut, bool try_lock, bool keep) {
    auto guard = std::make_unique<DisabledPreemptGuard>();
    std::optional<std::variant<Cursor<C>, CursorMut<C>>> c;
    if (mut) {
      auto r = try_lock ? pt_.try_cursor_mut(*guard, range) : pt_.cursor_mut(*guard, range);
      if (!r) return err(r.error());
      c.emplace(std::in_place_index<1>, std::move(*r));
    } else {
      auto r = try_lock ? pt_.try_cursor(*guard, range) : pt_.cursor(*guard, range);
      if (!r) return err(r.error());
      c.emplace(std::in_place_index<0>, std::move(*r));
    }
    const PagingLevel level = std::visit([](auto& x) { return x.guard_level(); }, *c);
    if (keep) {
      cursor_ = std::move(c);
      guard_ = std::move(guard);
    } else {
      c.reset();  // before its guard
    }
    return level;
  }

  void close() {
    cursor_.reset();
    guard_.reset();
  }

 private:
  PageTable<C> pt_;
  std::unique_ptr<DisabledPreemptGuard> guard_;
  std::optional<std::variant<Cursor<C>, CursorMut<C>>> cursor_;
};

namespace internal {

template <PageTableConfig C>
bool node_locked(Paddr pa) {
  auto& word = vmspace::internal::NodeView<C>{pa}.meta().lock;
  return boost::atomic_ref<std::uint32_t>(word).load(boost::memory_order_acquire) != 0;
}

// Every node of the tree under `pa` (level `level`, entries [first, last)) that is locked.
template <PageTableConfig C>
void collect_locked(Paddr pa, PagingLevel level, std::size_t first, std::size_t last,
                    std::set<Paddr>& out) {
  using F = typename C::Pte;
  if (node_locked<C>(pa)) out.insert(pa);
  if (level == 1) return;
  const vmspace::internal::NodeView<C> node{pa};
  for (std::size_t i = first; i < last; ++i) {
    const std::uint64_t raw = node.load_acquire(i);
    if (vmspace::internal::is_pt_entry<C>(raw, level)) {
      collect_locked<C>(F::paddr(raw, level), static_cast<PagingLevel>(level - 1), 0,
                        kNrEntries<ConstsOf<C>>, out);
    }
  }
}

template <PageTableConfig C>
std::set<Paddr> locked_nodes(const PageTable<C>& pt) {
  std::set<Paddr> out;
  collect_locked<C>(pt.root_paddr(), ConstsOf<C>::kNrLevels, C::kTopLevelIndexStart,
                    C::kTopLevelIndexEnd, out);
  return out;
}

// Phase 2 of the locking protocol: a locked child node inside `range` makes the cursor fail.
template <PageTableConfig C>
bool children_free(Paddr pa, PagingLevel level, VaRange range) {
  using F = typename C::Pte;
  using K = ConstsOf<C>;
  if (level == 1) return true;
  const vmspace::internal::NodeView<C> node{pa};
  const std::size_t s = pte_index<K>(range.start, level);
  const std::size_t e = pte_index<K>(range.end - 1, level);
  const std::uint64_t size = page_size<K>(level);
  for (std::size_t i = s; i <= e; ++i) {
    const std::uint64_t raw = node.load_acquire(i);
    if (!vmspace::internal::is_pt_entry<C>(raw, level)) continue;
    const Paddr child = F::paddr(raw, level);
    if (node_locked<C>(child)) return false;
    const Vaddr start = align_down(range.start, size) + (i - s) * size;
    const VaRange clipped{std::max(start, range.start),
                          std::min(start + (size - 1), range.end - 1) + 1};
    if (!children_free<C>(child, static_cast<PagingLevel>(level - 1), clipped)) return false;
  }
  return true;
}

// What creating a second cursor over `range` returns while this thread holds locks in the
// table: the protocol of page_table.hpp (phase 1 walks down lock-free and needs the lock of a
// node only to create a missing child or to make it the sub-tree root; phase 2 locks existing
// child nodes in range), with "locked" meaning "held by this thread" in a single-threaded test.
// Precondition: `range` passed the argument checks.
template <PageTableConfig C>
std::optional<PageTableError> predict_nested(const PageTable<C>& pt, VaRange range) {
  using F = typename C::Pte;
  using K = ConstsOf<C>;
  Paddr cur = pt.root_paddr();
  PagingLevel level = K::kNrLevels;
  for (; level >= 1; --level) {
    const std::size_t s = pte_index<K>(range.start, level);
    const std::size_t e = pte_index<K>(range.end - 1, level);
    if (level == 1 || s != e) break;
    const std::uint64_t size = page_size<K>(level);
    if (is_aligned(range.start, size) && range.end - range.start == size) break;
    const std::uint64_t raw = vmspace::internal::NodeView<C>{cur}.load_acquire(s);
    if (F::is_present(raw, level) && F::is_leaf(raw, level)) break;
    if (!F::is_present(raw, level)) {
      // The child must be created under cur's lock; below it everything is new and unlocked.
      if (node_locked<C>(cur)) return PageTableError::WouldDeadlock;
      return std::nullopt;
    }
    cur = F::paddr(raw, level);
  }
  if (node_locked<C>(cur)) return PageTableError::WouldDeadlock;
  if (!children_free<C>(cur, level, range)) return PageTableError::WouldDeadlock;
  return std::nullopt;
}

inline std::string describe(const std::optional<PageTableError>& e) {
  if (!e) return "ok";
  return to_string(*e);
}

template <class T>
std::string show(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

inline std::string show_mappings(const std::vector<check::Mapping>& ms) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < ms.size(); ++i) os << (i ? ", " : "") << ms[i];
  os << "]";
  return os.str();
}

inline bool same_mapping(const check::Mapping& a, const check::Mapping& b) {
  return a.va == b.va && a.level == b.level && a.pa == b.pa &&
         check::without_access_bits(a.prop) == check::without_access_bits(b.prop);
}

inline bool same_mappings(std::vector<check::Mapping> a, std::vector<check::Mapping> b) {
  auto by_va = [](const check::Mapping& x, const check::Mapping& y) { return x.va < y.va; };
  std::sort(a.begin(), a.end(), by_va);
  std::sort(b.begin(), b.end(), by_va);
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!same_mapping(a[i], b[i])) return false;
  }
  return true;
}

// Collects the mappings a fragment removed and checks the fragment's own consistency.
template <PageTableConfig C>
void frag_mappings(const PageTableFrag<C>& frag, std::vector<check::Mapping>& out,
                   std::string& problems) {
  using K = ConstsOf<C>;
  if (auto* m = std::get_if<MappedFrag<C>>(&frag)) {
    const RawItem raw = C::item_raw_info(*m->item);
    if (raw.level != m->level) {
      problems += "mapped fragment at " + hex(m->va) + " has level " + std::to_string(m->level) +
                  " but its item has level " + std::to_string(raw.level) + "; ";
    }
    out.push_back(check::Mapping{m->va, m->level, raw.paddr, raw.prop});
    return;
  }
  const auto& s = std::get<StrayPageTableFrag<C>>(frag);
  const Paddr node = s.node->paddr();
  const vmspace::internal::NodeView<C> view{node};
  const PagingLevel level = view.meta().level;
  if (level < 1 || page_size<K>(static_cast<PagingLevel>(level + 1)) != s.len) {
    problems += "stray fragment at " + hex(s.va) + " of length " + hex(s.len) + " holds a level-" +
                std::to_string(level) + " node; ";
    return;
  }
  auto inside = check::interpret_subtree<C>(node, level, s.va);
  // num_frames counts base pages: one per level-1 leaf, 512^(L-1) per level-L huge leaf.
  std::size_t base_pages = 0;
  for (const auto& x : inside) base_pages += static_cast<std::size_t>(x.size() / kSz4K);
  if (base_pages != s.num_frames) {
    problems += "stray fragment at " + hex(s.va) + " reports " + std::to_string(s.num_frames) +
                " frames but its leaves map " + std::to_string(base_pages) + " base pages; ";
  }
  // Every node of a detached sub-tree is marked stray and unlocked.
  std::set<Paddr> locked;
  collect_locked<C>(node, level, 0, kNrEntries<K>, locked);
  if (!locked.empty())
    problems += "detached sub-tree at " + hex(s.va) + " still has locked nodes; ";
  if (!view.meta().stray) problems += "detached node at " + hex(s.va) + " is not marked stray; ";
  out.insert(out.end(), inside.begin(), inside.end());
}

}  // namespace internal

// How often each op kind ended in each outcome ("map ok", "map AlreadyMapped", "unmap ok
// removed>0", ...): test drivers print it to show what the generators reach.
inline std::map<std::string, std::uint64_t>& op_stats() {
  static std::map<std::string, std::uint64_t> stats;
  return stats;
}
inline std::string format_op_stats() {
  std::ostringstream os;
  for (const auto& [k, n] : op_stats()) os << "  " << k << ": " << n << "\n";
  return os.str();
}

// Applies `op` to the model and the system and returns how their results differ ("" if they
// agree). Precondition: m.applicable(op).
template <PageTableConfig C>
std::string step(PtModel& m, PtSystem<C>& s, const PtOp& op) {
  using namespace internal;
  std::string out;
  std::string outcome = "ok";
  auto mismatch = [&](const std::string& what, const std::string& model, const std::string& lib) {
    out += what + ": model " + model + ", library " + lib + "\n";
  };
  auto compare_error = [&](const std::optional<PageTableError>& want,
                           const std::optional<PageTableError>& got) {
    if (want != got) mismatch("error", describe(want), describe(got));
    if (got) outcome = to_string(*got);
    return want.has_value() || got.has_value();
  };
  const Vaddr va = m.cur_va();
  const VaRange barrier = m.barrier();

  switch (op.kind) {
    case PtOp::Kind::Open: {
      const ModelOutcome want = model_apply(m, op);
      auto got = s.open(op.range, op.mut, op.try_lock, /*keep=*/true);
      if (compare_error(want.error, got ? std::nullopt : std::optional(got.error()))) break;
      if (*got != want.guard_level)
        mismatch("guard level", std::to_string(want.guard_level), std::to_string(*got));
      break;
    }
    case PtOp::Kind::Nested: {
      std::optional<PageTableError> want =
          check::model_check_cursor_range(m.model.config(), op.range);
      if (!want) {
        want = predict_nested<C>(s.table(), op.range);
        // Independent of the tree: a nested cursor overlapping the held one must fail.
        if (op.range.overlaps(barrier) && want != PageTableError::WouldDeadlock) {
          out += "protocol prediction says " + describe(want) +
                 " for a nested cursor overlapping " + show(barrier) + "\n";
        }
      }
      const auto locked_before = locked_nodes(s.table());
      auto got = s.open(op.range, op.mut, op.try_lock, /*keep=*/false);
      if (!compare_error(want, got ? std::nullopt : std::optional(got.error()))) {
        const PagingLevel g = m.model.guard_level(op.range);
        if (*got != g) mismatch("nested guard level", std::to_string(g), std::to_string(*got));
      }
      if (locked_nodes(s.table()) != locked_before)
        out += "a nested open changed which nodes are locked\n";
      break;
    }
    case PtOp::Kind::Close:
      model_apply(m, op);
      s.close();
      break;
    case PtOp::Kind::Query: {
      const ModelOutcome want = model_apply(m, op);
      auto got = s.cursor().query();
      if (compare_error(want.error, got ? std::nullopt : std::optional(got.error()))) break;
      if (want.mapping) {
        const check::Mapping& w = *want.mapping;
        if (!got->item) {
          mismatch("query", show(w), "nothing mapped in " + show(got->range));
          break;
        }
        const check::Mapping g{got->range.start, got->level, got->item->paddr, got->item->prop};
        if (!same_mapping(w, g) || got->item->level != got->level ||
            got->range != VaRange{w.va, w.va + w.size()}) {
          mismatch("query", show(w),
                   show(g) + " (item level " + std::to_string(got->item->level) + ")");
        }
        outcome = "ok, mapped L" + std::to_string(got->level);
      } else if (got->item) {
        mismatch("query", "nothing", show(got->range) + " mapped to " + hex(got->item->paddr));
      } else {
        outcome = "ok, absent";
        // An absent entry: its range is structural, but it must cover va and map nothing.
        const std::uint64_t size = check::model_page_size(got->level);
        if (!got->range.contains(va) || got->range.start != align_down(va, size) ||
            got->range.end - got->range.start != size ||
            m.model.overlaps(got->range.start, got->range.end - 1)) {
          out += "query: absent entry range " + show(got->range) + " at level " +
                 std::to_string(got->level) + " is inconsistent with va " + hex(va) + "\n";
        }
      }
      break;
    }
    case PtOp::Kind::FindNext: {
      const ModelOutcome want = model_apply(m, op);
      auto got = s.cursor().find_next(op.len.resolve(va, barrier));
      if (compare_error(want.error, got ? std::nullopt : std::optional(got.error()))) break;
      if (*got != want.found) {
        mismatch("found", want.found ? hex(*want.found) : "nothing", *got ? hex(**got) : "nothing");
      }
      outcome = *got ? "ok, found" : "ok, nothing";
      break;
    }
    case PtOp::Kind::Jump: {
      const ModelOutcome want = model_apply(m, op);
      auto got = s.cursor().jump(op.addr.resolve(va, barrier));
      compare_error(want.error, got ? std::nullopt : std::optional(got.error()));
      break;
    }
    case PtOp::Kind::Map: {
      const ModelOutcome want = model_apply(m, op);
      const Paddr pa = op.pa.resolve(op.level, m.model.config().paddr_limit);
      auto got = s.cursor_mut()->map(RawItem{pa, op.level, op.prop});
      if (!compare_error(want.error, got ? std::nullopt : std::optional(got.error()))) {
        outcome = "ok L" + std::to_string(op.level);
      }
      break;
    }
    case PtOp::Kind::Unmap: {
      const ModelOutcome want = model_apply(m, op);
      const std::uint64_t len = op.len.resolve(va, barrier);
      CursorMut<C>& c = *s.cursor_mut();
      std::vector<check::Mapping> removed;
      std::string problems;
      std::optional<PageTableError> error;
      const Vaddr end = va + len;
      for (bool first = true;; first = false) {
        auto f = c.take_next(first ? len : end - c.virt_addr());
        if (!f) {
          error = f.error();
          break;
        }
        if (!*f) break;
        frag_mappings<C>(**f, removed, problems);
        if (c.virt_addr() > end) problems += "take_next moved past the window end; ";
      }
      if (!problems.empty()) out += "unmap: " + problems + "\n";
      if (compare_error(want.error, error)) break;
      if (!same_mappings(want.removed, removed)) {
        mismatch("unmapped", show_mappings(want.removed), show_mappings(removed));
      }
      outcome = removed.empty() ? "ok, nothing" : removed.size() > 1 ? "ok, several" : "ok, one";
      break;
    }
    case PtOp::Kind::TakeNext: {
      const std::uint64_t len = op.len.resolve(va, barrier);
      CursorMut<C>& c = *s.cursor_mut();
      auto got = c.take_next(len);
      if (!got) {
        // The model's argument checks: unmap on a copy reports the same errors.
        PtModel copy = m;
        auto r = copy.cursor->unmap(len);
        compare_error(r ? std::nullopt : std::optional(r.error()), got.error());
        break;
      }
      std::vector<check::Mapping> removed;
      std::string problems;
      Vaddr taken_end = va + len;
      if (*got) {
        frag_mappings<C>(**got, removed, problems);
        VaRange taken{};
        if (auto* mf = std::get_if<MappedFrag<C>>(&**got)) {
          taken = VaRange{mf->va, mf->va + check::model_page_size(mf->level)};
        } else {
          const auto& sf = std::get<StrayPageTableFrag<C>>(**got);
          taken = VaRange{sf.va, sf.va + sf.len};
        }
        if (taken.start < va || taken.end > va + len || taken.start >= taken.end) {
          problems += "took " + show(taken) + " outside the window; ";
        } else if (taken.start > va && m.model.overlaps(va, taken.start - 1)) {
          problems += "skipped a mapping before " + show(taken) + "; ";
        }
        if (std::holds_alternative<MappedFrag<C>>(**got) && removed.size() == 1 &&
            removed[0].va != taken.start) {
          problems += "mapped fragment range mismatch; ";
        }
        taken_end = taken.end;
      }
      if (!problems.empty()) {
        out += "take_next: " + problems + "\n";
        break;
      }
      auto r = m.cursor->unmap(taken_end - va);
      if (!r) {
        mismatch("take_next", describe(r.error()), "ok");
        break;
      }
      if (!same_mappings(*r, removed)) mismatch("taken", show_mappings(*r), show_mappings(removed));
      break;
    }
    case PtOp::Kind::Protect: {
      const ModelOutcome want = model_apply(m, op);
      auto got = s.cursor_mut()->protect_next(op.len.resolve(va, barrier), op.prot);
      if (compare_error(want.error, got ? std::nullopt : std::optional(got.error()))) break;
      if (*got != want.range) {
        mismatch("protected", want.range ? show(*want.range) : "nothing",
                 *got ? show(**got) : "nothing");
      }
      outcome = *got ? "ok, changed" : "ok, nothing";
      break;
    }
    case PtOp::Kind::ProtectRange: {
      const ModelOutcome want = model_apply(m, op);
      auto got = s.cursor_mut()->protect(op.len.resolve(va, barrier), op.prot);
      if (compare_error(want.error, got ? std::nullopt : std::optional(got.error()))) break;
      if (*got != want.changed)
        mismatch("entries changed", std::to_string(want.changed), std::to_string(*got));
      outcome = *got == 0 ? "ok, nothing" : *got == 1 ? "ok, one" : "ok, several";
      break;
    }
  }
  ++op_stats()[std::string(to_string(op.kind)) + " " + outcome];
  if (m.cursor && s.has_cursor() && m.cursor->virt_addr() != s.cursor().virt_addr()) {
    mismatch("cursor position", hex(m.cursor->virt_addr()), hex(s.cursor().virt_addr()));
  }
  if (m.cursor.has_value() != s.has_cursor()) {
    mismatch("cursor open", m.cursor ? "yes" : "no", s.has_cursor() ? "yes" : "no");
  }
  return out;
}

struct StateCheckOptions {
  // Check the refcount law (needs an RCU barrier, so only without an open cursor).
  bool refcount_law = true;
  // Walk every frame slot of physical memory (also only without an open cursor).
  bool frame_slots = true;
  // The kernel table's references for the refcount law, computed once by the caller
  // (kernel_table_refs()); null: walk the kernel table every time. Tables of raw items never
  // change the kernel table, and walking its linear mapping costs more than the rest of a check.
  const check::RawRefs* kernel_refs = nullptr;
};

// The kernel table's references, computed (and the kernel table checked) on the first call.
// Only for tests that never change the kernel table.
inline const check::RawRefs& kernel_table_refs() {
  static const check::RawRefs refs = [] {
    rcu_barrier();
    check::RawRefs r;
    check::CheckReport report;
    check::check_page_table(kernel_page_table(), report, &r);
    VMS_ASSERT(report.ok(), "the kernel table is broken: {}", report.to_string());
    return r;
  }();
  return refs;
}

// The table equals the model and every invariant holds. "" if so.
template <PageTableConfig C>
std::string check_state(const PtModel& m, const PtSystem<C>& s,
                        const StateCheckOptions& options = {}) {
  std::string out;
  for (const std::string& d : m.model.diff(check::interpret(s.table())))
    out += "model vs table: " + d + "\n";
  check::CheckReport report;
  check::RawRefs refs;
  check::TableCheckOptions topt;
  topt.warn_pa_overlap = false;  // raw items may share physical pages on purpose
  topt.expect_unlocked = !s.has_cursor();
  check::check_page_table(s.table(), report, &refs, topt);
  // Slot states and the refcount law are exact only at quiescent points: the RCU reclaimer
  // thread may be tearing down a retired node (count 0) at any moment until rcu_barrier().
  const bool quiescent = !s.has_cursor() && !in_atomic_mode();
  if (quiescent && (options.frame_slots || options.refcount_law)) rcu_barrier();
  if (options.frame_slots && quiescent) check::check_frame_slots(report);
  if (options.refcount_law && quiescent) {
    if (options.kernel_refs) {
      for (const auto& [pa, n] : *options.kernel_refs) refs[pa] += n;
    } else {
      check::check_page_table(kernel_page_table(), report, &refs);
    }
    check::check_refcount_law(refs, report);
  }
  if (!report.ok()) out += report.to_string();
  return out;
}

}  // namespace vmspace::test
