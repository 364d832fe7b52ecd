// Recorder: a worker's recorded cursor operations and copies. Each runs on the library, draws
// its ticket while the cursor is held and leaves a Record (or CopyRecord) for the checker.
#include "recorder.hpp"

#include <algorithm>
#include <span>
#include <string>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/io.hpp>
#include <vmspace/tlb.hpp>

#include "engine.hpp"
#include "worker.hpp"

namespace vmspace::stress {

// ---- StressCursor: forwards to the recorder of the worker holding it ----

Vaddr StressCursor::virt_addr() const noexcept {
  return mut_ ? mut_->virt_addr() : ro_->virt_addr();
}
VaRange StressCursor::range() const noexcept { return mut_ ? mut_->range() : ro_->range(); }
Result<std::pair<VaRange, std::optional<VmQueriedItem>>> StressCursor::query() {
  return rec_->cursor_query(*this);
}
Result<std::optional<Vaddr>> StressCursor::find_next(std::size_t len) {
  return rec_->cursor_find_next(*this, len);
}
Result<void> StressCursor::jump(Vaddr va) { return rec_->cursor_jump(*this, va); }
Result<void> StressCursor::map_frame(PageProperty prop) {
  return rec_->cursor_map(*this, internal::MapSize::Frame, prop);
}
Result<void> StressCursor::map_huge(PageProperty prop) {
  return rec_->cursor_map(*this, internal::MapSize::Huge, prop);
}
Result<std::size_t> StressCursor::unmap(std::size_t len) { return rec_->cursor_unmap(*this, len); }
Result<std::optional<VaRange>> StressCursor::protect_next(std::size_t len,
                                                          const ProtectChange& change) {
  return rec_->cursor_protect(*this, len, change);
}

namespace internal {

namespace {

// Counters only their owner writes: a plain load and store instead of a locked increment.
void bump(std::atomic<std::uint64_t>& c) noexcept {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

}  // namespace

void Recorder::count(OpKind k, std::optional<Error> e) noexcept {
  bump(counts[static_cast<std::size_t>(k)][outcome_index(e)]);
  if (k != OpKind::Fault) bump(ops_);
}

void Recorder::push(Record& r) {
  r.ticket = engine_.next_ticket();
  records.push_back(r);
}

Result<void> Recorder::activate(std::optional<std::size_t> space) {
  Result<void> r = space ? engine_.spaces[*space]->activate() : VmSpace::deactivate_current();
  if (r) active_ = space;
  count(OpKind::Activate, r ? std::nullopt : std::optional<Error>(r.error()));
  return r;
}

Result<StressContext::CopyResult> Recorder::copy(CopyDirection direction, Vaddr va,
                                                 std::size_t len) {
  const bool write = direction == CopyDirection::Write;
  const OpKind kind = write ? OpKind::Write : OpKind::Read;
  if (va % 8 != 0 || len % 8 != 0 || len == 0 || len > kMaxCopyBytes) {
    count(kind, Error::InvalidArgs);
    return err(Error::InvalidArgs);
  }
  if (!active_) {
    count(kind, Error::AccessDenied);
    return err(Error::AccessDenied);
  }
  VmSpace& sp = *engine_.spaces[*active_];
  buf_.assign(len / 8, 0);
  CopyRecord c;
  c.va = va;
  c.len = len;
  c.write = write;
  c.space = static_cast<std::uint16_t>(*active_);
  c.thread = static_cast<std::uint8_t>(index_);
  std::size_t copied = 0;
  bool faulted = false;
  status_.set(WorkerState::Copying, engine_.now_ns());
  if (write) {
    auto w = sp.writer(va, len);
    if (!w) {
      status_.set(WorkerState::Running, engine_.now_ns());
      count(kind, w.error());
      return err(w.error());
    }
    c.seq = write_base + writes.size();
    for (std::size_t i = 0; i < buf_.size(); ++i)
      buf_[i] = encode_word(index_, c.seq, static_cast<std::uint32_t>(i));
    writes.push_back(WriteInfo{});
    c.start = engine_.next_ticket();
    VmReader<Infallible> src{std::as_bytes(std::span(buf_))};
    auto res = w->write_fallible(src);
    c.end = engine_.next_ticket();
    copied = res ? *res : res.error().copied;
    faulted = !res;
    writes[c.seq - write_base] = WriteInfo{c.start, va, copied, c.space};
  } else {
    auto rd = sp.reader(va, len);
    if (!rd) {
      status_.set(WorkerState::Running, engine_.now_ns());
      count(kind, rd.error());
      return err(rd.error());
    }
    c.start = engine_.next_ticket();
    VmWriter<Infallible> dst{std::as_writable_bytes(std::span(buf_))};
    auto res = rd->read_fallible(dst);
    c.end = engine_.next_ticket();
    copied = res ? *res : res.error().copied;
    faulted = !res;
    // Compress what was read into runs of consecutive words of one write.
    c.runs_begin = runs.size();
    for (std::size_t i = 0; i < copied / 8; ++i) {
      const DecodedWord d = decode_word(buf_[i]);
      const Vaddr at = va + i * 8;
      if (!runs.empty() && runs.size() > c.runs_begin) {
        ReadRun& last = runs.back();
        const bool zero_run = d.thread == 0 && buf_[i] == 0 && last.thread == 0;
        const bool same_write = d.thread != 0 && last.thread == d.thread && last.seq == d.seq &&
                                last.first_idx + last.count == d.idx;
        if ((zero_run || same_write) && last.va + std::uint64_t{last.count} * 8 == at) {
          ++last.count;
          continue;
        }
      }
      if (d.thread == 0 && buf_[i] != 0) {
        // Non-zero garbage with no writer tag: report as a word of a writer that cannot exist.
        runs.push_back(ReadRun{at, 1, 0xff, buf_[i], 0});
        continue;
      }
      runs.push_back(ReadRun{at, 1, d.thread, d.seq, d.idx});
    }
    c.runs_end = runs.size();
  }
  status_.set(WorkerState::Running, engine_.now_ns());
  c.copied = copied;
  c.faulted = faulted;
  copies.push_back(c);
  count(kind, faulted ? std::optional<Error>(Error::PageFault) : std::nullopt);
  return StressContext::CopyResult{copied, faulted};
}

Result<void> Recorder::with_cursor(std::size_t space, VaRange range, CursorKind kind, LockMode mode,
                                   const std::function<void(StressCursor&)>& body) {
  if (space >= engine_.spaces.size()) return err(Error::InvalidArgs);
  bool nested = false;
  for (const Held& h : held_) nested = nested || h.space == space;
  CursorSlot& slot = slots[std::min(held_.size(), kSlots - 1)];
  // A seqlock without fences (gcc refuses them under ThreadSanitizer): release stores here and
  // acquire loads in the readers order the fields against the sequence number.
  slot.seq.fetch_add(1, std::memory_order_seq_cst);  // odd: fields changing
  slot.space.store(static_cast<std::uint16_t>(space), std::memory_order_release);
  slot.start.store(range.start, std::memory_order_release);
  slot.end.store(range.end, std::memory_order_release);
  slot.mut.store(kind == CursorKind::Mutable, std::memory_order_release);
  slot.since_ns.store(engine_.now_ns(), std::memory_order_relaxed);
  slot.status.store(CursorSlot::kWaiting, std::memory_order_relaxed);
  slot.seq.fetch_add(1, std::memory_order_release);  // even: stable

  const OpKind ok_kind = nested ? OpKind::OpenNested : OpKind::Open;
  Record r;
  r.kind = RecKind::Open;
  r.range = range;
  r.space = static_cast<std::uint16_t>(space);
  r.thread = static_cast<std::uint8_t>(index_);
  r.mut = kind == CursorKind::Mutable;
  r.nested = nested;
  r.try_lock = mode == LockMode::Try;

  auto failed = [&](Error e) -> Result<void> {
    r.ok = false;
    r.error = e;
    r.pt_error = last_page_table_error().value_or(PageTableError::InvalidVaddr);
    r.cursor = engine_.next_cursor_id();
    push(r);
    count(ok_kind, e);
    slot.status.store(CursorSlot::kFree, std::memory_order_release);
    return err(e);
  };
  auto run_body = [&](auto& cursor, VmSpace::Cursor* ro, VmSpace::CursorMut* mut) {
    r.cursor = engine_.next_cursor_id();
    r.before = r.after = cursor.virt_addr();
    slot.since_ns.store(engine_.now_ns(), std::memory_order_relaxed);
    slot.status.store(CursorSlot::kHeld, std::memory_order_seq_cst);
    check_exclusion(space, range, r.cursor);
    push(r);  // the open ticket, drawn with the locks held
    count(ok_kind, std::nullopt);
    held_.push_back(Held{space, range});
    StressCursor sc(*this, space, r.cursor, ro, mut);
    body(sc);
    held_.pop_back();
    Record close = r;
    close.kind = RecKind::Close;
    close.before = close.after = cursor.virt_addr();
    push(close);  // the close ticket, drawn before the locks are released
    slot.status.store(CursorSlot::kFree, std::memory_order_seq_cst);
  };

  VmSpace& sp = *engine_.spaces[space];
  auto guard = disable_preempt();
  if (kind == CursorKind::Mutable) {
    auto c = mode == LockMode::Try ? sp.try_cursor_mut(guard, range) : sp.cursor_mut(guard, range);
    if (!c) return failed(c.error());
    run_body(*c, nullptr, &*c);
  } else {
    auto c = mode == LockMode::Try ? sp.try_cursor(guard, range) : sp.cursor(guard, range);
    if (!c) return failed(c.error());
    run_body(*c, &*c, nullptr);
  }
  return {};
}

void Recorder::check_exclusion(std::size_t space, VaRange range, std::uint64_t cursor) {
  // Our slot is published as held (seq_cst) before this scan: of two threads holding
  // overlapping cursors at once, the later one to publish sees the other's slot.
  for (const auto& other : engine_.workers()) {
    if (&other->recorder() == this) continue;
    for (const CursorSlot& s : other->recorder().slots) {
      const std::uint64_t s1 = s.seq.load(std::memory_order_acquire);
      if ((s1 & 1) != 0 || s.status.load(std::memory_order_seq_cst) != CursorSlot::kHeld) continue;
      const std::uint16_t sp = s.space.load(std::memory_order_acquire);
      const VaRange r{s.start.load(std::memory_order_acquire),
                      s.end.load(std::memory_order_acquire)};
      if (s.seq.load(std::memory_order_acquire) != s1) continue;  // rewritten meanwhile
      if (sp != space || r.start >= range.end || range.start >= r.end) continue;
      std::string what = "thread t" + std::to_string(index_) + " was granted cursor " +
                         std::to_string(cursor) + " over [" + hex(range.start) + ", " +
                         hex(range.end) + ") of space " + std::to_string(space) +
                         " while thread t" + std::to_string(other->index) +
                         " held a cursor over [" + hex(r.start) + ", " + hex(r.end) + ")";
      engine_.online_finding(std::move(what));
      return;
    }
  }
}

Record Recorder::op_record(const StressCursor& c, RecKind k) const {
  Record r;
  r.kind = k;
  r.cursor = c.id_;
  r.range = c.range();
  r.space = static_cast<std::uint16_t>(c.space());
  r.thread = static_cast<std::uint8_t>(index_);
  r.before = c.virt_addr();
  return r;
}

namespace {

void set_error(Record& r, Error e) {
  r.ok = false;
  r.error = e;
  r.pt_error = last_page_table_error().value_or(PageTableError::InvalidVaddr);
}

}  // namespace

Result<std::pair<VaRange, std::optional<VmQueriedItem>>> Recorder::cursor_query(StressCursor& c) {
  Record r = op_record(c, RecKind::Query);
  auto q = c.mut_ ? c.mut_->query() : c.ro_->query();
  r.after = c.virt_addr();
  if (!q) {
    set_error(r, q.error());
  } else {
    r.out_range = q->first;
    if (q->second) {
      r.has_value = true;
      r.out_pa = q->second->paddr;
      r.out_level = q->second->level;
      r.out_prop = q->second->prop;
    }
  }
  push(r);
  count(OpKind::Query, q ? std::nullopt : std::optional<Error>(q.error()));
  return q;
}

Result<std::optional<Vaddr>> Recorder::cursor_find_next(StressCursor& c, std::size_t len) {
  Record r = op_record(c, RecKind::FindNext);
  r.len = len;
  auto f = c.mut_ ? c.mut_->find_next(len) : c.ro_->find_next(len);
  r.after = c.virt_addr();
  if (!f) {
    set_error(r, f.error());
  } else if (*f) {
    r.has_value = true;
    r.out_va = **f;
  }
  push(r);
  count(OpKind::FindNext, f ? std::nullopt : std::optional<Error>(f.error()));
  return f;
}

Result<void> Recorder::cursor_jump(StressCursor& c, Vaddr va) {
  Record r = op_record(c, RecKind::Jump);
  r.target = va;
  auto j = c.mut_ ? c.mut_->jump(va) : c.ro_->jump(va);
  r.after = c.virt_addr();
  if (!j) set_error(r, j.error());
  push(r);
  count(OpKind::Jump, j ? std::nullopt : std::optional<Error>(j.error()));
  return j;
}

Result<void> Recorder::cursor_map(StressCursor& c, MapSize size, PageProperty prop) {
  const bool huge = size == MapSize::Huge;
  const OpKind kind = huge ? OpKind::MapHuge : OpKind::Map;
  if (!c.mut_) return err(Error::InvalidArgs);
  Record r = op_record(c, RecKind::Map);
  r.level = huge ? 2 : 1;
  r.prop = PageProperty::new_user(prop.flags, prop.cache);  // what VmSpace stores
  Result<void> res = {};
  if (huge) {
    if (!spare_huge_) {
      auto seg = FrameAllocOptions().alloc_segment(512);
      if (!seg) {
        count(kind, Error::NoMemory);
        return err(Error::NoMemory);
      }
      spare_huge_.emplace(std::move(*seg));
    }
    r.pa = spare_huge_->paddr();
    res = c.mut_->map_segment(std::move(*spare_huge_), prop);
    if (res) spare_huge_.reset();  // on error the segment came back into *spare_huge_
  } else {
    if (!spare_frame_) {
      auto f = FrameAllocOptions().alloc_frame();
      if (!f) {
        count(kind, Error::NoMemory);
        return err(Error::NoMemory);
      }
      spare_frame_.emplace(std::move(*f));
    }
    r.pa = spare_frame_->paddr();
    res = c.mut_->map(std::move(*spare_frame_), prop);
    if (res) spare_frame_.reset();
  }
  r.after = c.virt_addr();
  if (!res) set_error(r, res.error());
  push(r);
  count(kind, res ? std::nullopt : std::optional<Error>(res.error()));
  return res;
}

Result<std::size_t> Recorder::cursor_unmap(StressCursor& c, std::size_t len) {
  if (!c.mut_) return err(Error::InvalidArgs);
  Record r = op_record(c, RecKind::Unmap);
  r.len = len;
  auto u = c.mut_->unmap(len);
  r.after = c.virt_addr();
  if (!u) {
    set_error(r, u.error());
  } else {
    r.count = *u;
    if (*u > 0) ++unmaps_with_frames;
  }
  push(r);
  count(OpKind::Unmap, u ? std::nullopt : std::optional<Error>(u.error()));
  return u;
}

Result<std::optional<VaRange>> Recorder::cursor_protect(StressCursor& c, std::size_t len,
                                                        const ProtectChange& change) {
  if (!c.mut_) return err(Error::InvalidArgs);
  Record r = op_record(c, RecKind::Protect);
  r.len = len;
  r.change = change;
  auto p = c.mut_->protect_next(len, [&](PageFlags& f, CachePolicy& cp) { change.apply(f, cp); });
  r.after = c.virt_addr();
  if (!p) {
    set_error(r, p.error());
  } else if (*p) {
    r.has_value = true;
    r.out_range = **p;
    // Make the new permissions hold everywhere before the operation counts as done.
    auto op = TlbFlushOp::for_range(**p);
    if (op) c.mut_->flusher().issue_tlb_flush(*op);
    c.mut_->flusher().dispatch_tlb_flush();
  }
  push(r);
  count(OpKind::Protect, p ? std::nullopt : std::optional<Error>(p.error()));
  return p;
}

}  // namespace internal

}  // namespace vmspace::stress
