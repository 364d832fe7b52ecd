// The checks of each segment: Replay (records on the model, in ticket order), the shortest
// failing history search (ddmin over the records touching a mismatch) and Checker::run_job
// (serializability, refinement against the tables, the copy checks).
#include "checker.hpp"

#include <algorithm>
#include <map>
#include <sstream>

#include <vmspace/user_pt_config.hpp>

namespace vmspace::stress::internal {

namespace {

using check::AbstractModel;
using check::Mapping;
using Cat = Mismatch::Category;

constexpr std::uint64_t k2M = std::uint64_t{2} << 20;

bool overlap(VaRange a, VaRange b) noexcept { return a.start < b.end && b.start < a.end; }

std::string range_str(VaRange r) { return "[" + hex(r.start) + ", " + hex(r.end) + ")"; }

std::string mapping_str(const Mapping& m) {
  std::ostringstream os;
  os << m;
  return os.str();
}

std::string err_str(PageTableError e) { return vmspace::to_string(e); }

Mismatch result(const Record& r, const std::string& what, std::string signature) {
  return Mismatch{Cat::Result, describe(r) + ": " + what,
                  std::string(to_string(r.kind)) + ":" + signature};
}

// Compares an observed error with the model's.
std::optional<Mismatch> expect_error(const Record& r, PageTableError e) {
  if (r.ok)
    return result(r, "observed success, the model expects " + err_str(e), "ok/" + err_str(e));
  if (r.pt_error != e) {
    return result(r, "observed " + err_str(r.pt_error) + ", the model expects " + err_str(e),
                  err_str(r.pt_error) + "/" + err_str(e));
  }
  if (r.error != to_vm_error(e)) {
    return result(r,
                  std::string("VmSpace returned ") + std::string(vmspace::to_string(r.error)) +
                      " for " + err_str(e) + " (expected " +
                      std::string(vmspace::to_string(to_vm_error(e))) + ")",
                  "fold/" + err_str(e));
  }
  return std::nullopt;
}

std::optional<Mismatch> expect_ok(const Record& r, const std::string& model_result) {
  if (r.ok) return std::nullopt;
  return result(r, "observed " + err_str(r.pt_error) + ", the model expects " + model_result,
                err_str(r.pt_error) + "/ok");
}

std::optional<Mismatch> expect_after(const Record& r, Vaddr model_va) {
  if (r.after == model_va) return std::nullopt;
  return result(r, "the cursor ends at " + hex(r.after) + ", the model's at " + hex(model_va),
                "position");
}

bool is_entry_size(std::uint64_t size) noexcept {
  for (PagingLevel l = 1; l <= 4; ++l) {
    if (size == check::model_page_size(l)) return true;
  }
  return false;
}

enum class Access : std::uint8_t { Read, Write };

bool accessible(const AbstractModel& m, Vaddr page, Access access) {
  auto hit = m.find(page);
  if (!hit) return false;
  const PageProperty& p = hit->prop;
  return has(p.flags, PageFlags::R) && has(p.priv_flags, PrivilegedPageFlags::USER) &&
         (access == Access::Read || has(p.flags, PageFlags::W));
}

}  // namespace

// ---- Replay ----

std::optional<Mismatch> Replay::apply(const Record& r) {
  if (r.space >= models_.size() || models_[r.space] == nullptr) return std::nullopt;
  switch (r.kind) {
    case RecKind::Open:
      return apply_open(r);
    case RecKind::Close:
      open_.erase(r.cursor);
      return std::nullopt;
    default:
      return apply_op(r);
  }
}

std::optional<Mismatch> Replay::apply_open(const Record& r) {
  AbstractModel& m = model(r.space);
  const auto expect = check::model_check_cursor_range(m.config(), r.range);
  bool nested_overlap = false;
  const Open* other = nullptr;
  for (const auto& [id, o] : open_) {
    if (o.implicit || o.space != r.space || !overlap(o.range, r.range)) continue;
    if (o.thread == r.thread) {
      nested_overlap = true;
    } else if (other == nullptr || o.ticket < other->ticket) {
      other = &o;
    }
  }
  if (expect) {
    if (r.ok)
      return Mismatch{Cat::InvalidRange,
                      describe(r) + ": granted, the range checks expect " + err_str(*expect),
                      {}};
    if (r.pt_error != *expect || r.error != to_vm_error(*expect)) {
      return Mismatch{
          Cat::InvalidRange, describe(r) + ": the range checks expect " + err_str(*expect), {}};
    }
    return std::nullopt;
  }
  if (!r.ok) {
    const bool contention =
        r.pt_error == PageTableError::WouldBlock || r.pt_error == PageTableError::WouldDeadlock;
    if (contention && r.error != to_vm_error(r.pt_error)) {
      return Mismatch{Cat::CreationError, describe(r) + ": VmSpace folded the error wrongly", {}};
    }
    if (contention && (r.nested || r.try_lock)) return std::nullopt;
    if (contention) {
      return Mismatch{Cat::Contention,
                      describe(r) +
                          ": a blocking creation by a thread holding no other cursor of this "
                          "space must wait, not fail",
                      {}};
    }
    return Mismatch{Cat::CreationError,
                    describe(r) +
                        ": the model expects success (NoMemory means the run's "
                        "bounded arenas leaked memory)",
                    {}};
  }
  if (nested_overlap) {
    return Mismatch{Cat::NestedGranted,
                    describe(r) +
                        ": granted although the same thread holds an overlapping cursor "
                        "(must be WouldBlock or WouldDeadlock)",
                    {}};
  }
  if (other != nullptr) {
    return Mismatch{Cat::ExclusionBroken,
                    describe(r) + ": granted while cursor " + std::to_string(other->id) +
                        " of thread t" + std::to_string(other->thread) + " over " +
                        range_str(other->range) + " (opened at #" + std::to_string(other->ticket) +
                        ") is still open; overlapping cursors must be serialized",
                    {}};
  }
  open_.erase(r.cursor);
  open_.emplace(r.cursor, Open{r.cursor, r.ticket, r.space, r.thread, r.range,
                               std::make_unique<check::ModelCursor>(m, r.range)});
  return std::nullopt;
}

std::optional<Mismatch> Replay::apply_op(const Record& r) {
  AbstractModel& m = model(r.space);
  auto it = open_.find(r.cursor);
  if (it == open_.end()) {
    if (strict_)
      return Mismatch{Cat::Recording, describe(r) + ": operation on a cursor that is not open", {}};
    it = open_
             .emplace(r.cursor,
                      Open{r.cursor, r.ticket, r.space, r.thread, r.range,
                           std::make_unique<check::ModelCursor>(m, r.range), /*implicit=*/true})
             .first;
  }
  check::ModelCursor& mc = *it->second.cursor;
  if (strict_ && mc.virt_addr() != r.before) {
    return Mismatch{Cat::Recording,
                    describe(r) + ": the cursor was at " + hex(r.before) +
                        " but the previous "
                        "operation left it at " +
                        hex(mc.virt_addr()),
                    {}};
  }
  mc.set_virt_addr(r.before);

  switch (r.kind) {
    case RecKind::Query: {
      auto q = mc.query();
      if (!q) return expect_error(r, q.error());
      if (*q) {
        const Mapping& want = **q;
        if (auto e = expect_ok(r, mapping_str(want))) return e;
        if (!r.has_value) return result(r, "the model has " + mapping_str(want), "none/item");
        const VaRange wr{want.va, want.va + want.size()};
        if (r.out_range.start != wr.start || r.out_range.end != wr.end || r.out_pa != want.pa ||
            r.out_level != want.level ||
            check::without_access_bits(r.out_prop) != check::without_access_bits(want.prop)) {
          return result(r, "the model has " + mapping_str(want), "item/other-item");
        }
      } else {
        if (auto e = expect_ok(r, "nothing mapped")) return e;
        if (r.has_value) return result(r, "the model has nothing mapped there", "item/none");
        // The range of an absent entry depends on the tree's shape: check consistency.
        const std::uint64_t size = r.out_range.end - r.out_range.start;
        if (r.out_range.end <= r.out_range.start || !is_entry_size(size) ||
            !is_aligned(r.out_range.start, size) ||
            !(r.out_range.start <= r.before && r.before < r.out_range.end)) {
          return result(r,
                        "an absent entry's range must be one aligned entry containing the cursor",
                        "absent-range");
        }
        if (auto hit = m.first_touching(r.out_range.start, r.out_range.end - 1)) {
          return result(r, "the absent entry's range overlaps the model's " + mapping_str(*hit),
                        "absent-overlap");
        }
      }
      return expect_after(r, mc.virt_addr());
    }
    case RecKind::FindNext: {
      auto f = mc.find_next(r.len);
      if (!f) return expect_error(r, f.error());
      if (auto e = expect_ok(r, *f ? hex(**f) : std::string("none"))) return e;
      if (f->has_value() != r.has_value || (r.has_value && **f != r.out_va)) {
        return result(r, "the model finds " + (*f ? hex(**f) : std::string("nothing")),
                      std::string(r.has_value ? "some" : "none") + "/" + (*f ? "some" : "none"));
      }
      return expect_after(r, mc.virt_addr());
    }
    case RecKind::Jump: {
      auto j = mc.jump(r.target);
      if (!j) return expect_error(r, j.error());
      if (auto e = expect_ok(r, "Ok")) return e;
      return expect_after(r, mc.virt_addr());
    }
    case RecKind::Map: {
      auto mp = mc.map(r.pa, r.level, r.prop);
      if (!mp) return expect_error(r, mp.error());
      if (auto e = expect_ok(r, "Ok")) return e;
      return expect_after(r, mc.virt_addr());
    }
    case RecKind::Unmap: {
      auto u = mc.unmap(r.len);
      if (!u) return expect_error(r, u.error());
      if (auto e = expect_ok(r, std::to_string(u->size()) + " mappings removed")) return e;
      // Every tracked frame removed counts: a 2 MiB mapping counts its 512 base pages whether
      // its leaf is taken alone or goes away inside a detached sub-tree.
      std::uint64_t frames = 0;
      for (const Mapping& p : *u) frames += p.size() / kPageSize;
      if (r.count != frames) {
        return result(r,
                      "the model removed " + std::to_string(u->size()) + " mappings of " +
                          std::to_string(frames) + " frames in all",
                      r.count < frames ? "count-under" : "count-over");
      }
      return expect_after(r, mc.virt_addr());
    }
    case RecKind::Protect: {
      const ProtectChange change = r.change;
      auto p =
          mc.protect_next(r.len, [&](PageProperty& prop) { change.apply(prop.flags, prop.cache); });
      if (!p) return expect_error(r, p.error());
      if (auto e = expect_ok(r, *p ? range_str(**p) : std::string("none"))) return e;
      if (p->has_value() != r.has_value ||
          (r.has_value && ((*p)->start != r.out_range.start || (*p)->end != r.out_range.end))) {
        return result(r, "the model changes " + (*p ? range_str(**p) : std::string("nothing")),
                      std::string(r.has_value ? "some" : "none") + "/" + (*p ? "some" : "none"));
      }
      return expect_after(r, mc.virt_addr());
    }
    case RecKind::Open:
    case RecKind::Close:
      break;
  }
  return std::nullopt;
}

// ---- the shortest failing history ----

namespace {

// One unit of the reduction: an initial mapping, a whole cursor lifetime (its open and close
// records go together: dropping only the close would keep the cursor open forever), or one
// operation.
struct Elem {
  bool initial;
  Mapping mapping;
  std::size_t rec;                   // the operation, or the cursor's open record
  std::optional<std::size_t> close;  // the cursor's close record, if any before the failure
};

class Reducer {
 public:
  // A subset "fails" when the failing record mismatches exactly as in the full history (same
  // description: same model prediction, same conflicting cursor), not merely in some way.
  Reducer(const AbstractModel& initial, const std::vector<Record>& sorted, std::size_t fail,
          const Mismatch& want, std::chrono::steady_clock::time_point deadline)
      : config_(initial.config()), sorted_(sorted), fail_(fail), want_(want), deadline_(deadline) {}

  bool fails(const std::vector<Elem>& subset) {
    AbstractModel fresh(config_);
    const Record& f = sorted_[fail_];
    std::vector<AbstractModel*> models(static_cast<std::size_t>(f.space) + 1, nullptr);
    models[f.space] = &fresh;
    std::vector<std::size_t> recs;
    for (const Elem& e : subset) {
      if (e.initial) {
        fresh.map(e.mapping);
        continue;
      }
      recs.push_back(e.rec);
      if (e.close) recs.push_back(*e.close);
    }
    std::sort(recs.begin(), recs.end());
    Replay replay(models, Replay::Mode::Lax);
    for (std::size_t i : recs) (void)replay.apply(sorted_[i]);
    auto m = replay.apply(f);
    if (!m.has_value() || m->category != want_.category) return false;
    const bool same =
        want_.signature.empty() ? m->text == want_.text : m->signature == want_.signature;
    if (same) last_text = m->text;
    return same;
  }

  bool out_of_time() const { return std::chrono::steady_clock::now() >= deadline_; }

  std::string last_text;  // the failing record's mismatch in the last failing subset

  // Zeller's ddmin: a 1-minimal failing subset unless time runs out (then `minimal` is false).
  std::vector<Elem> ddmin(std::vector<Elem> c, bool& minimal) {
    std::size_t n = 2;
    while (c.size() >= 2) {
      if (out_of_time()) {
        minimal = false;
        return c;
      }
      const std::size_t chunk = (c.size() + n - 1) / n;
      bool reduced = false;
      for (std::size_t start = 0; start < c.size() && !reduced; start += chunk) {
        std::vector<Elem> part(
            c.begin() + static_cast<std::ptrdiff_t>(start),
            c.begin() + static_cast<std::ptrdiff_t>(std::min(c.size(), start + chunk)));
        if (part.size() < c.size() && fails(part)) {
          c = std::move(part);
          n = 2;
          reduced = true;
        }
      }
      for (std::size_t start = 0; start < c.size() && !reduced && n > 2; start += chunk) {
        std::vector<Elem> rest;
        rest.reserve(c.size());
        for (std::size_t i = 0; i < c.size(); ++i) {
          if (i < start || i >= start + chunk) rest.push_back(c[i]);
        }
        if (fails(rest)) {
          c = std::move(rest);
          n = std::max<std::size_t>(n - 1, 2);
          reduced = true;
        }
        if (out_of_time()) break;
      }
      if (reduced) continue;
      if (n >= c.size()) break;
      n = std::min(n * 2, c.size());
    }
    minimal = !out_of_time() || c.size() < 2;
    return c;
  }

 private:
  check::ModelConfig config_;
  const std::vector<Record>& sorted_;
  std::size_t fail_;
  const Mismatch& want_;
  std::chrono::steady_clock::time_point deadline_;
};

std::vector<Elem> candidates(const AbstractModel& initial, const std::vector<Record>& sorted,
                             std::size_t fail, VaRange interest) {
  const Record& f = sorted[fail];
  std::vector<Elem> out;
  for (const auto& [va, m] : initial.mappings()) {
    if (overlap(VaRange{m.va, m.va + m.size()}, interest))
      out.push_back(Elem{true, m, 0, std::nullopt});
  }
  std::unordered_map<std::uint64_t, std::size_t> open_elem;  // cursor id -> index in out
  for (std::size_t i = 0; i < fail; ++i) {
    const Record& r = sorted[i];
    if (r.space != f.space || !overlap(r.range, interest)) continue;
    if (r.kind == RecKind::Close) {
      auto it = open_elem.find(r.cursor);
      if (it != open_elem.end()) {
        out[it->second].close = i;
        continue;
      }
    }
    if (r.kind == RecKind::Open && r.ok) open_elem[r.cursor] = out.size();
    out.push_back(Elem{false, {}, i, std::nullopt});
  }
  return out;
}

}  // namespace

FailingHistory shortest_failing_history(const AbstractModel& initial,
                                        const std::vector<Record>& sorted, std::size_t fail,
                                        const Mismatch& mismatch, double seconds) {
  const Record& f = sorted[fail];
  FailingHistory h;
  h.violation = mismatch.text;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(static_cast<std::int64_t>(seconds * 1e6));
  Reducer reducer(initial, sorted, fail, mismatch, deadline);
  // The records touching the failing cursor's range, widened to whole 2 MiB entries (a huge
  // mapping that straddles the range is part of its state); failing that, everything of the
  // space since the last quiescent point.
  const VaRange interest{align_down(f.range.start, k2M), align_up_sat(f.range.end, k2M)};
  std::vector<Elem> c = candidates(initial, sorted, fail, interest);
  if (!reducer.fails(c)) c = candidates(initial, sorted, fail, VaRange{0, UINT64_MAX});
  h.candidates = c.size();
  if (reducer.fails(c)) {
    bool minimal = true;
    c = reducer.ddmin(std::move(c), minimal);
    h.minimal = minimal;
    if (reducer.fails(c)) h.violation = reducer.last_text;  // as the reduced history shows it
  } else {
    // Not reproducible on the model alone (it needs state the records do not show): report the
    // last records touching the range as they are.
    if (c.size() > 32) c.erase(c.begin(), c.end() - 32);
    h.minimal = false;
  }
  std::vector<std::size_t> recs;
  for (const Elem& e : c) {
    if (e.initial) {
      h.initial.push_back("mapped " + mapping_str(e.mapping));
      continue;
    }
    recs.push_back(e.rec);
    if (e.close) recs.push_back(*e.close);
  }
  std::sort(recs.begin(), recs.end());
  for (std::size_t i : recs) h.records.push_back(describe(sorted[i]));
  h.records.push_back(describe(f));
  return h;
}

// ---- Checker ----

Checker::Checker(std::size_t spaces, unsigned threads) : writes_(threads) {
  models_.reserve(spaces);
  for (std::size_t i = 0; i < spaces; ++i)
    models_.emplace_back(check::model_config<UserPtConfig>());
}

namespace {

struct Segment {
  std::vector<CopyRecord>& copies;
};

struct Tracker {
  std::size_t copy;
  Vaddr page;
  bool need_access;  // a page the copy got through; else the page where it stopped
  bool write;
  bool satisfied = false;
  std::uint64_t end;
};

FailingHistory touching_history(const std::string& violation, const std::vector<Record>& sorted,
                                std::uint16_t space, Vaddr va,
                                const std::vector<std::string>& prefix) {
  FailingHistory h;
  h.violation = violation;
  std::vector<std::string> lines;
  for (const Record& r : sorted) {
    if (r.space == space && r.range.start <= va && va < r.range.end) lines.push_back(describe(r));
  }
  h.candidates = lines.size();
  if (lines.size() > 24) lines.erase(lines.begin(), lines.end() - 24);
  h.records = prefix;
  h.records.insert(h.records.end(), lines.begin(), lines.end());
  return h;
}

}  // namespace

std::size_t Checker::run_job(Job& job, double minimize_seconds, std::vector<Finding>& out) {
  if (writes_.size() < job.new_writes.size()) writes_.resize(job.new_writes.size());
  for (std::size_t t = 0; t < job.new_writes.size(); ++t) {
    writes_[t].insert(writes_[t].end(), job.new_writes[t].begin(), job.new_writes[t].end());
  }
  const std::size_t n = check_segment(job.records, job.copies, job.runs, minimize_seconds, out);
  for (std::size_t s = 0; s < job.actual.size() && s < models_.size(); ++s) {
    check_refinement(s, job.actual[s], job.records, out);
  }
  return n;
}

std::size_t Checker::check_segment(std::vector<Record>& recs, std::vector<CopyRecord>& copies,
                                   const std::vector<std::vector<ReadRun>>& runs,
                                   double minimize_seconds, std::vector<Finding>& out) {
  auto by_ticket = [](const Record& a, const Record& b) { return a.ticket < b.ticket; };
  if (!std::is_sorted(recs.begin(), recs.end(), by_ticket))
    std::sort(recs.begin(), recs.end(), by_ticket);
  Segment seg_view{copies};
  auto& seg = seg_view;
  std::vector<std::size_t> copy_order(seg.copies.size());
  for (std::size_t i = 0; i < copy_order.size(); ++i) copy_order[i] = i;
  std::sort(copy_order.begin(), copy_order.end(), [&](std::size_t a, std::size_t b) {
    return seg.copies[a].start < seg.copies[b].start;
  });

  // The state at the segment's start, for the shortest-history search.
  std::vector<AbstractModel> initial = models_;
  std::vector<AbstractModel*> ptrs;
  for (AbstractModel& m : models_) ptrs.push_back(&m);
  Replay replay(ptrs, Replay::Mode::Strict);

  std::vector<Tracker> trackers;
  std::vector<std::multimap<Vaddr, std::size_t>> index(models_.size());
  failed_.assign(models_.size(), false);
  std::vector<bool>& space_failed = failed_;

  auto evaluate = [&](Tracker& t, const AbstractModel& m) {
    if (accessible(m, t.page, t.write ? Access::Write : Access::Read) == t.need_access)
      t.satisfied = true;
  };
  auto start_copy = [&](std::size_t ci) {
    const CopyRecord& c = seg.copies[ci];
    if (c.space >= models_.size()) return;
    const AbstractModel& m = models_[c.space];
    auto add = [&](Vaddr page, bool need) {
      trackers.push_back(Tracker{ci, page, need, c.write, false, c.end});
      evaluate(trackers.back(), m);
      index[c.space].emplace(page, trackers.size() - 1);
    };
    if (c.copied > 0) {
      for (Vaddr p = align_down(c.va, kPageSize); p <= c.va + c.copied - 1; p += kPageSize)
        add(p, true);
    }
    if (c.faulted) add(align_down(c.va + c.copied, kPageSize), false);
  };

  std::size_t ci = 0;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    const Record& r = recs[i];
    while (ci < copy_order.size() && seg.copies[copy_order[ci]].start < r.ticket)
      start_copy(copy_order[ci++]);
    if (r.space >= models_.size()) continue;
    if (space_failed[r.space]) continue;  // the model diverged; resynchronised at the checkpoint
    if (auto mm = replay.apply(r)) {
      space_failed[r.space] = true;
      Finding f{"serializability", mm->text, std::nullopt};
      if (mm->category != Cat::Recording) {
        f.history = shortest_failing_history(initial[r.space], recs, i, *mm, minimize_seconds);
      }
      out.push_back(std::move(f));
      continue;
    }
    if (r.kind == RecKind::Open || r.kind == RecKind::Close) continue;
    auto& idx = index[r.space];
    for (auto it = idx.lower_bound(r.range.start); it != idx.end() && it->first < r.range.end;) {
      Tracker& t = trackers[it->second];
      evaluate(t, models_[r.space]);
      if (r.ticket > t.end) {
        it = idx.erase(it);  // later operations landed after the copy ended
      } else {
        ++it;
      }
    }
  }
  while (ci < copy_order.size()) start_copy(copy_order[ci++]);

  // Copies: accessibility over each copy's window.
  std::vector<bool> copy_reported(seg.copies.size(), false);
  for (const Tracker& t : trackers) {
    const CopyRecord& c = seg.copies[t.copy];
    if (t.satisfied || copy_reported[t.copy] || space_failed[c.space]) continue;
    copy_reported[t.copy] = true;
    std::string what = describe(c) + ": page " + hex(t.page) +
                       (t.need_access ? " was copied through but was never accessible"
                                      : " stopped the copy but was accessible") +
                       " (" + (t.write ? "write" : "read") +
                       ") in any state of the copy's ticket window";
    Finding f{"copy", what, touching_history(what, recs, c.space, t.page, {describe(c)})};
    out.push_back(std::move(f));
  }

  // Copies: every word read was written there (or is a fresh frame's zero).
  for (const CopyRecord& c : seg.copies) {
    if (c.write || c.thread >= runs.size()) continue;
    const std::vector<ReadRun>& rr = runs[c.thread];
    for (std::size_t k = c.runs_begin; k < c.runs_end && k < rr.size(); ++k) {
      const ReadRun& run = rr[k];
      if (run.thread == 0) continue;
      std::string problem;
      const unsigned wt = run.thread - 1u;
      if (wt >= writes_.size() || run.seq >= writes_[wt].size()) {
        problem = "no writer produced it (thread " + std::to_string(wt) + ", write #" +
                  std::to_string(run.seq) + ")";
      } else {
        const WriteInfo& w = writes_[wt][run.seq];
        const Vaddr expected = w.va + std::uint64_t{run.first_idx} * 8;
        if (w.space != c.space) {
          problem = "it was written to space " + std::to_string(w.space);
        } else if (expected != run.va) {
          problem = "it was written to " + hex(expected);
        } else if ((std::uint64_t{run.first_idx} + run.count) * 8 > w.copied) {
          problem = "that write stopped after " + hex(w.copied) + " bytes";
        } else if (w.start > c.end) {
          problem = "that write started at #" + std::to_string(w.start) + ", after the read ended";
        }
      }
      if (problem.empty()) continue;
      std::string what = describe(c) + ": read " + std::to_string(run.count) + " word(s) at " +
                         hex(run.va) + " from thread t" + std::to_string(wt) + "'s write #" +
                         std::to_string(run.seq) + " (word " + std::to_string(run.first_idx) +
                         "), but " + problem;
      out.push_back(Finding{
          "copy", what,
          touching_history(what, recs, c.space, align_down(run.va, kPageSize), {describe(c)})});
      break;
    }
  }
  return recs.size();
}

void Checker::check_refinement(std::size_t space, const std::vector<Mapping>& actual,
                               const std::vector<Record>& segment_sorted,
                               std::vector<Finding>& out) {
  AbstractModel& m = models_[space];
  std::map<Vaddr, Mapping> have;
  for (const Mapping& a : actual) have.emplace(a.va, a);
  std::vector<std::string> diffs;
  std::optional<Vaddr> first;
  auto note = [&](Vaddr va, std::string s) {
    if (!first || va < *first) first = va;
    if (diffs.size() < 6) diffs.push_back(std::move(s));
  };
  for (const auto& [va, want] : m.mappings()) {
    auto it = have.find(va);
    if (it == have.end()) {
      note(va, "the model maps " + mapping_str(want) + ", the table does not");
      continue;
    }
    const Mapping& got = it->second;
    if (got.level != want.level || got.pa != want.pa ||
        check::without_access_bits(got.prop) != check::without_access_bits(want.prop)) {
      note(va, "the model maps " + mapping_str(want) + ", the table " + mapping_str(got));
    }
    have.erase(it);
  }
  for (const auto& [va, extra] : have)
    note(va, "the table maps " + mapping_str(extra) + ", the model does not");
  if (!first) return;
  if (replay_failed(space)) diffs.clear();
  if (!diffs.empty()) {
    std::ostringstream os;
    os << "space " << space << " differs from the model replayed from the records:";
    for (const std::string& d : diffs) os << "\n    " << d;
    Finding f{"refinement", os.str(), std::nullopt};
    f.history = touching_history(f.description, segment_sorted, static_cast<std::uint16_t>(space),
                                 *first, {});
    out.push_back(std::move(f));
  }
  // Resynchronise with the real table.
  AbstractModel fresh(m.config());
  for (const Mapping& a : actual) fresh.map(a);
  m = std::move(fresh);
}

}  // namespace vmspace::stress::internal
