// The stress engine: workers, the coordinator (quiescent checkpoints) and the watchdog.
#include "engine.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <sstream>
#include <thread>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vmspace/boot.hpp>
#include <vmspace/check/interpret.hpp>
#include <vmspace/check/invariants.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/tlb.hpp>

namespace vmspace::stress {

namespace {

constexpr std::uint64_t k2M = std::uint64_t{2} << 20;
constexpr std::uint64_t k1G = std::uint64_t{1} << 30;
constexpr std::uint64_t k512G = std::uint64_t{512} << 30;

constexpr VaRange kLeafRegion{16u << 20, (16u << 20) + k2M};
constexpr VaRange kOverlapRegion{64u << 20, 72u << 20};
constexpr VaRange kSpanRegion{k512G - (4u << 20), k512G + (4u << 20)};
constexpr std::uint64_t kSlotSize = 8u << 20;
constexpr int kWorkerNice = 5;

VaRange disjoint_slot(unsigned i) noexcept { return VaRange{(std::uint64_t{i} + 1) * k1G, (std::uint64_t{i} + 1) * k1G + kSlotSize}; }

}  // namespace

std::vector<Region> stress_regions(unsigned threads) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (unsigned i = 0; i < 256; ++i) n.push_back("disjoint." + std::to_string(i));
    return n;
  }();
  std::vector<Region> out{{"leaf", kLeafRegion}, {"overlap", kOverlapRegion}, {"span", kSpanRegion}};
  for (unsigned i = 0; i < threads && i < 256; ++i) out.push_back(Region{names[i].c_str(), disjoint_slot(i)});
  return out;
}

bool demand_mappable(Vaddr va, unsigned threads) noexcept {
  if (((va >> 16) & 3) == 3) return false;
  auto in = [va](VaRange r) { return r.start <= va && va < r.end; };
  if (in(kLeafRegion) || in(kOverlapRegion) || in(kSpanRegion)) return true;
  if (va < k1G) return false;
  const std::uint64_t slot = va / k1G - 1;
  return slot < threads && in(disjoint_slot(static_cast<unsigned>(slot)));
}

OpMix default_mix(Profile p) noexcept {
  OpMix m;
  switch (p) {
    case Profile::Disjoint: break;
    case Profile::LeafContended:
      m.map = 8;
      m.unmap = 5;
      break;
    case Profile::Overlapping: m.max_ops_per_session = 8; break;
    case Profile::Mixed:
      m.read = 2;
      m.write = 2;
      m.p_nested = 0.05;
      break;
  }
  return m;
}

// ---- StressCursor / StressContext: thin forwards to the worker ----

Vaddr StressCursor::virt_addr() const noexcept { return mut_ ? mut_->virt_addr() : ro_->virt_addr(); }
VaRange StressCursor::range() const noexcept { return mut_ ? mut_->range() : ro_->range(); }
Result<std::pair<VaRange, std::optional<VmQueriedItem>>> StressCursor::query() { return w_->cursor_query(*this); }
Result<std::optional<Vaddr>> StressCursor::find_next(std::size_t len) { return w_->cursor_find_next(*this, len); }
Result<void> StressCursor::jump(Vaddr va) { return w_->cursor_jump(*this, va); }
Result<void> StressCursor::map_frame(PageProperty prop) { return w_->cursor_map(*this, false, prop); }
Result<void> StressCursor::map_huge(PageProperty prop) { return w_->cursor_map(*this, true, prop); }
Result<std::size_t> StressCursor::unmap(std::size_t len) { return w_->cursor_unmap(*this, len); }
Result<std::optional<VaRange>> StressCursor::protect_next(std::size_t len, const ProtectChange& change) {
  return w_->cursor_protect(*this, len, change);
}

unsigned StressContext::thread_index() const noexcept { return w_->index; }
CpuId StressContext::cpu() const noexcept { return w_->binding->cpu(); }
std::mt19937_64& StressContext::rng() noexcept { return w_->rng; }
std::size_t StressContext::num_spaces() const noexcept { return w_->engine.spaces.size(); }
VmSpace& StressContext::space(std::size_t i) const noexcept { return *w_->engine.spaces[i]; }
std::optional<std::size_t> StressContext::space_index(const VmSpace& s) const noexcept {
  const auto& sp = w_->engine.spaces;
  for (std::size_t i = 0; i < sp.size(); ++i) {
    if (sp[i].get() == &s) return i;
  }
  return std::nullopt;
}
std::optional<std::size_t> StressContext::active_space() const noexcept { return w_->active; }
Result<void> StressContext::activate(std::optional<std::size_t> i) { return w_->activate(i); }
Result<void> StressContext::with_cursor(std::size_t i, VaRange range, CursorKind kind, LockMode mode,
                                        const std::function<void(StressCursor&)>& body) {
  return w_->with_cursor(i, range, kind, mode, body);
}
Result<StressContext::CopyResult> StressContext::read(Vaddr va, std::size_t len) { return w_->copy(false, va, len); }
Result<StressContext::CopyResult> StressContext::write(Vaddr va, std::size_t len) { return w_->copy(true, va, len); }

namespace detail {

namespace {

thread_local Worker* t_worker = nullptr;

void bump(std::atomic<std::uint64_t>& c) noexcept { c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }

}  // namespace

// ---- Worker ----

Worker::Worker(Engine& e, unsigned i, std::uint64_t seed) : engine(e), index(i), rng(seed) {}

std::size_t Worker::engine_spaces() const noexcept { return engine.spaces.size(); }

void Worker::set_state(WorkerState s) noexcept {
  state_since_ns.store(engine.now_ns(), std::memory_order_relaxed);
  state.store(s, std::memory_order_relaxed);
}

void Worker::count(OpKind k, std::optional<Error> e) noexcept {
  bump(counts[static_cast<std::size_t>(k)][outcome_index(e)]);
  if (k != OpKind::Fault) bump(ops_);
}

void Worker::push(Record& r) {
  r.ticket = engine.next_ticket();
  records.push_back(r);
}

void Worker::thread_main() {
  t_worker = this;
  // Workers run a little nicer than the checker thread, so that replaying a segment keeps up
  // with the workers producing the next one instead of stalling them at the next checkpoint.
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kWorkerNice);
  auto b = CpuBinding::bind_any();
  if (!b) {
    set_state(WorkerState::Exited);
    engine.worker_ready(false);
    engine.worker_exited();
    t_worker = nullptr;
    return;
  }
  binding.emplace(std::move(*b));
  cpu_id.store(static_cast<int>(binding->cpu().as_u32()), std::memory_order_relaxed);
  set_state(WorkerState::Running);
  engine.worker_ready(true);
  while (!engine.stop_requested()) {
    if (engine.pause_requested()) {
      engine.park(*this);
      continue;
    }
    do_action();
  }
  // Leave the CPU without a space so the spaces can be dropped.
  (void)VmSpace::deactivate_current();
  active.reset();
  binding.reset();
  set_state(WorkerState::Exited);
  engine.worker_exited();
  t_worker = nullptr;
}

void Worker::do_action() {
  const OpMix& m = engine.mix;
  const unsigned custom = engine.options.custom_op ? m.custom : 0;
  const unsigned weights[] = {m.mut_session, m.ro_session, m.read, m.write, m.activate, custom};
  unsigned total = 0;
  for (unsigned w : weights) total += w;
  if (total == 0) {
    session(true);
    return;
  }
  std::uint64_t x = below(total);
  unsigned pick = 0;
  while (x >= weights[pick]) x -= weights[pick++];
  switch (pick) {
    case 0: session(true); break;
    case 1: session(false); break;
    case 2: copy_action(false); break;
    case 3: copy_action(true); break;
    case 4: (void)activate(chance(0.1) ? std::nullopt : std::optional<std::size_t>(pick_space())); break;
    default: {
      StressContext ctx(*this);
      engine.options.custom_op(ctx);
      count(OpKind::Custom, std::nullopt);
      break;
    }
  }
}

Region Worker::pick_region() {
  const Region own = engine.regions[3 + index];
  switch (engine.options.profile) {
    case Profile::Disjoint: return own;
    case Profile::LeafContended: return engine.leaf;
    case Profile::Overlapping: return engine.overlap_region;
    case Profile::Mixed: {
      const auto x = below(100);
      if (x < 20) return own;
      if (x < 40) return engine.leaf;
      if (x < 80) return engine.overlap_region;
      return engine.span;
    }
  }
  return own;
}

VaRange Worker::pick_range(const Region& reg) {
  const VaRange r = reg.range;
  const std::uint64_t pages = (r.end - r.start) / kPageSize;
  if (r.start == engine.leaf.range.start && engine.options.profile == Profile::LeafContended) {
    const auto x = below(100);
    if (x < 75) {
      // Mostly this thread's own pages of the shared leaf table.
      const std::uint64_t threads = engine.options.threads;
      const std::uint64_t slice = std::max<std::uint64_t>(1, pages / threads);
      const std::uint64_t first = (index * slice) % pages;
      const std::uint64_t last = std::min(pages, first + slice);
      const std::uint64_t s = first + below(last - first);
      const std::uint64_t len = 1 + below(std::min<std::uint64_t>(8, last - s));
      return VaRange{r.start + s * kPageSize, r.start + (s + len) * kPageSize};
    }
    if (x < 85) return r;  // exactly the 2 MiB entry: the cursor may map a huge page there
  }
  if (r.start == engine.regions[3 + index].range.start && engine.options.profile != Profile::LeafContended &&
      chance(0.03)) {
    // The thread's whole 1 GiB entry: unmapping all of it detaches a level-2 node (huge leaves
    // included) as one stray sub-tree.
    const Vaddr g = align_down(r.start, k1G);
    return VaRange{g, g + k1G};
  }
  const auto x = below(100);
  if (x < 45 || pages < 2) {
    const std::uint64_t len = 1 + below(std::min<std::uint64_t>(16, pages));
    const std::uint64_t s = below(pages - len + 1);
    return VaRange{r.start + s * kPageSize, r.start + (s + len) * kPageSize};
  }
  if (x < 70) {
    const std::uint64_t len = 1 + below(pages);
    const std::uint64_t s = below(pages - len + 1);
    return VaRange{r.start + s * kPageSize, r.start + (s + len) * kPageSize};
  }
  const Vaddr first2m = align_up_sat(r.start, k2M);
  const std::uint64_t entries = r.end > first2m ? (r.end - first2m) / k2M : 0;
  if (x < 82 && entries > 0) {
    const Vaddr s = first2m + below(entries) * k2M;
    return VaRange{s, s + k2M};
  }
  if (x < 92 && entries > 1) {
    const std::uint64_t n = 2 + below(std::min<std::uint64_t>(3, entries - 1));
    const Vaddr s = first2m + below(entries - n + 1) * k2M;
    return VaRange{s, s + n * k2M};
  }
  return r;
}

VaRange Worker::bad_range() {
  switch (below(5)) {
    case 0: return VaRange{0x5000, 0x5000};                       // empty
    case 1: return VaRange{0x9000, 0x5000};                       // reversed
    case 2: return VaRange{kLeafRegion.start + 0x123, kLeafRegion.start + 0x2000};  // unaligned
    case 3: return VaRange{k512G * 256 - 0x2000, k512G * 256 + 0x2000};  // past user space
    default: return VaRange{kLeafRegion.start, kLeafRegion.start + 0x1800};  // unaligned end
  }
}

std::uint64_t Worker::random_len(Vaddr from, VaRange r) {
  const std::uint64_t rem = from < r.end ? (r.end - from) / kPageSize : 0;
  const auto x = below(100);
  if (x < 35) return std::min<std::uint64_t>(rem, 1 + below(16)) * kPageSize;
  if (x < 70) return below(rem + 1) * kPageSize;
  return rem * kPageSize;
}

PageProperty Worker::random_prop(bool invalid) {
  static constexpr PageFlags kFlags[] = {PageFlags::RW, PageFlags::RW, PageFlags::RW, PageFlags::R,
                                         PageFlags::RX, PageFlags::RWX, PageFlags::None,
                                         PageFlags::RW | PageFlags::AVAIL2};
  static constexpr CachePolicy kCaches[] = {CachePolicy::Writeback, CachePolicy::Writeback, CachePolicy::Writeback,
                                            CachePolicy::Uncacheable, CachePolicy::WriteCombining,
                                            CachePolicy::Writethrough};
  PageProperty p = PageProperty::new_user(kFlags[below(std::size(kFlags))], kCaches[below(std::size(kCaches))]);
  if (invalid) p.cache = CachePolicy::WriteProtected;  // x86 leaf PTEs cannot encode it
  return p;
}

ProtectChange Worker::random_change(bool invalid) {
  ProtectChange c;
  switch (below(6)) {
    case 0: c.clear = PageFlags::W; break;
    case 1: c.set = PageFlags::RW; break;
    case 2: c.set = PageFlags::RX; c.clear = PageFlags::W; break;
    case 3: c.clear = PageFlags::RWX; break;
    case 4: c.set = PageFlags::AVAIL2; break;
    default: c.set = PageFlags::R; c.cache = CachePolicy::Uncacheable; break;
  }
  if (invalid) c.cache = CachePolicy::WriteProtected;
  return c;
}

void Worker::session(bool mut) {
  const OpMix& m = engine.mix;
  const std::size_t space = pick_space();
  const bool invalid = chance(m.p_invalid / 4);
  const VaRange range = invalid ? bad_range() : pick_range(pick_region());
  const LockMode mode = chance(m.p_try) ? LockMode::Try : LockMode::Block;
  (void)with_cursor(space, range, mut ? CursorKind::Mutable : CursorKind::ReadOnly, mode, [&](StressCursor& c) {
    const std::uint64_t n = 1 + below(std::max(1u, m.max_ops_per_session));
    const std::uint64_t nested_at = chance(m.p_nested) ? below(n) : n;
    for (std::uint64_t i = 0; i < n; ++i) {
      if (i == nested_at) maybe_nested(c);
      session_op(c, mut);
    }
  });
}

void Worker::maybe_nested(StressCursor& c) {
  const VaRange outer = c.range();
  const auto x = below(100);
  std::size_t space = c.space();
  VaRange range;
  if (x < 60) {
    // Overlapping the cursor this thread holds: must fail (WouldDeadlock or WouldBlock).
    const Vaddr s = random_page(outer);
    range = VaRange{s, std::min(s + (1 + below(16)) * kPageSize, std::max(outer.end, s + kPageSize))};
  } else if (x < 85 || engine.spaces.size() < 2 || space + 1 >= engine.spaces.size()) {
    // Anywhere in the same space: may be granted if it is disjoint, never blocks.
    range = pick_range(pick_region());
  } else {
    // A higher-numbered space: blocking is fine there (spaces are locked in index order).
    space = space + 1 + below(engine.spaces.size() - space - 1);
    range = pick_range(pick_region());
  }
  const bool mut = c.is_mut() && chance(0.7);
  (void)with_cursor(space, range, mut ? CursorKind::Mutable : CursorKind::ReadOnly, LockMode::Block,
                    [&](StressCursor& inner) {
                      const std::uint64_t n = 1 + below(3);
                      for (std::uint64_t i = 0; i < n; ++i) session_op(inner, mut);
                    });
}

void Worker::session_op(StressCursor& c, bool mut) {
  const OpMix& m = engine.mix;
  const unsigned weights[] = {m.query, m.find_next, m.jump, mut ? m.map : 0u, mut ? m.map_huge : 0u,
                              mut ? m.unmap : 0u, mut ? m.protect : 0u};
  unsigned total = 0;
  for (unsigned w : weights) total += w;
  if (total == 0) return;
  std::uint64_t x = below(total);
  unsigned op = 0;
  while (x >= weights[op]) x -= weights[op++];
  const VaRange r = c.range();
  const bool invalid = chance(m.p_invalid);
  auto bad_len = [&] {
    const Vaddr va = c.virt_addr();
    if (below(2) == 0) return random_len(va, r) + 1 + below(kPageSize - 1);  // unaligned
    return (va < r.end ? r.end - va : 0) + (1 + below(4)) * kPageSize;         // past the end
  };
  switch (op) {
    case 0:
      if (c.virt_addr() >= r.end || chance(0.6)) (void)c.jump(random_page(r));
      (void)c.query();
      break;
    case 1:
      if (chance(0.3)) (void)c.jump(random_page(r));
      (void)c.find_next(invalid ? bad_len() : random_len(c.virt_addr(), r));
      break;
    case 2: {
      Vaddr target = random_page(r);
      if (invalid) {
        switch (below(3)) {
          case 0: target += 1 + below(kPageSize - 1); break;
          case 1: target = r.end; break;
          default: target = r.start >= kPageSize ? r.start - kPageSize : r.end + kPageSize; break;
        }
      }
      (void)c.jump(target);
      break;
    }
    case 3:
      if (c.virt_addr() >= r.end || chance(0.5)) (void)c.jump(random_page(r));
      (void)c.map_frame(random_prop(invalid));
      break;
    case 4: {
      const Vaddr first = align_up_sat(r.start, k2M);
      if (first < r.end && r.end - first >= k2M) {
        const Vaddr slot = first + below((r.end - first) / k2M) * k2M;
        (void)c.jump(invalid ? slot + kPageSize * (1 + below(511)) : slot);
      } else if (!invalid && !chance(0.1)) {
        // No 2 MiB slot in this range: a huge map could only fail, so usually map a frame.
        if (c.virt_addr() >= r.end || chance(0.5)) (void)c.jump(random_page(r));
        (void)c.map_frame(random_prop(false));
        break;
      }
      (void)c.map_huge(random_prop(false));
      break;
    }
    case 5:
      if (chance(0.4)) (void)c.jump(random_page(r));
      (void)c.unmap(invalid ? bad_len() : random_len(c.virt_addr(), r));
      break;
    default:
      if (chance(0.4)) (void)c.jump(random_page(r));
      (void)c.protect_next(invalid ? bad_len() : random_len(c.virt_addr(), r), random_change(invalid && chance(0.5)));
      break;
  }
}

void Worker::copy_action(bool write) {
  if (!active) {
    if (!activate(pick_space())) return;
  }
  const VaRange r = pick_region().range;
  const std::uint64_t words = (r.end - r.start) / 8;
  const Vaddr va = r.start + 8 * below(words - 1);
  const std::uint64_t max_words = std::min<std::uint64_t>((r.end - va) / 8, 16 * 1024 / 8);
  const std::uint64_t len = 8 * (1 + below(max_words));
  (void)copy(write, va, len);
}

Result<void> Worker::activate(std::optional<std::size_t> space) {
  Result<void> r = space ? engine.spaces[*space]->activate() : VmSpace::deactivate_current();
  if (r) active = space;
  count(OpKind::Activate, r ? std::nullopt : std::optional<Error>(r.error()));
  return r;
}

Result<StressContext::CopyResult> Worker::copy(bool write, Vaddr va, std::size_t len) {
  const OpKind kind = write ? OpKind::Write : OpKind::Read;
  if (va % 8 != 0 || len % 8 != 0 || len == 0 || len > kMaxCopyBytes) {
    count(kind, Error::InvalidArgs);
    return err(Error::InvalidArgs);
  }
  if (!active) {
    count(kind, Error::AccessDenied);
    return err(Error::AccessDenied);
  }
  VmSpace& sp = *engine.spaces[*active];
  buf_.assign(len / 8, 0);
  CopyRecord c;
  c.va = va;
  c.len = len;
  c.write = write;
  c.space = static_cast<std::uint16_t>(*active);
  c.thread = static_cast<std::uint8_t>(index);
  std::size_t copied = 0;
  bool faulted = false;
  set_state(WorkerState::Copying);
  if (write) {
    auto w = sp.writer(va, len);
    if (!w) {
      set_state(WorkerState::Running);
      count(kind, w.error());
      return err(w.error());
    }
    c.seq = write_base + writes.size();
    for (std::size_t i = 0; i < buf_.size(); ++i) buf_[i] = encode_word(index, c.seq, static_cast<std::uint32_t>(i));
    writes.push_back(WriteInfo{});
    c.start = engine.next_ticket();
    VmReader<Infallible> src{std::as_bytes(std::span(buf_))};
    auto res = w->write_fallible(src);
    c.end = engine.next_ticket();
    copied = res ? *res : res.error().copied;
    faulted = !res;
    writes[c.seq - write_base] = WriteInfo{c.start, va, copied, c.space};
  } else {
    auto rd = sp.reader(va, len);
    if (!rd) {
      set_state(WorkerState::Running);
      count(kind, rd.error());
      return err(rd.error());
    }
    c.start = engine.next_ticket();
    VmWriter<Infallible> dst{std::as_writable_bytes(std::span(buf_))};
    auto res = rd->read_fallible(dst);
    c.end = engine.next_ticket();
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
  set_state(WorkerState::Running);
  c.copied = copied;
  c.faulted = faulted;
  copies.push_back(c);
  count(kind, faulted ? std::optional<Error>(Error::PageFault) : std::nullopt);
  return StressContext::CopyResult{copied, faulted};
}

Result<void> Worker::handle_fault(const PageFaultInfo& info) {
  const WorkerState prev = state.load(std::memory_order_relaxed);
  set_state(WorkerState::Faulting);
  StressContext ctx(*this);
  Result<void> r = engine.options.fault_hook ? engine.options.fault_hook(ctx, info) : default_fault(ctx, info);
  set_state(prev);
  count(OpKind::Fault, r ? std::nullopt : std::optional<Error>(r.error()));
  return r;
}

Result<void> Worker::default_fault(StressContext& ctx, const PageFaultInfo& info) {
  auto idx = ctx.space_index(*info.space);
  const Vaddr page = align_down(info.address, kPageSize);
  if (!idx || !demand_mappable(page, engine.options.threads)) return err(Error::PageFault);
  const bool write = info.access == PageFaultAccess::Write;
  Result<void> out = err(Error::PageFault);
  auto opened = ctx.with_cursor(*idx, VaRange{page, page + kPageSize}, CursorKind::Mutable, LockMode::Block,
                                [&](StressCursor& c) {
                                  auto q = c.query();
                                  if (!q) return;
                                  if (q->second) {
                                    // Someone mapped it meanwhile: retry if the access can succeed now.
                                    const PageFlags f = q->second->prop.flags;
                                    if (has(f, PageFlags::R) && (!write || has(f, PageFlags::W))) out = {};
                                    return;
                                  }
                                  if (c.map_frame(PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback))) out = {};
                                });
  if (!opened) return err(Error::PageFault);
  return out;
}

Result<void> Worker::with_cursor(std::size_t space, VaRange range, CursorKind kind, LockMode mode,
                                 const std::function<void(StressCursor&)>& body) {
  if (space >= engine.spaces.size()) return err(Error::InvalidArgs);
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
  slot.since_ns.store(engine.now_ns(), std::memory_order_relaxed);
  slot.status.store(CursorSlot::kWaiting, std::memory_order_relaxed);
  slot.seq.fetch_add(1, std::memory_order_release);  // even: stable

  const OpKind ok_kind = nested ? OpKind::OpenNested : OpKind::Open;
  Record r;
  r.kind = RecKind::Open;
  r.range = range;
  r.space = static_cast<std::uint16_t>(space);
  r.thread = static_cast<std::uint8_t>(index);
  r.mut = kind == CursorKind::Mutable;
  r.nested = nested;
  r.try_lock = mode == LockMode::Try;

  auto failed = [&](Error e) -> Result<void> {
    r.ok = false;
    r.error = e;
    r.pt_error = last_page_table_error().value_or(PageTableError::InvalidVaddr);
    r.cursor = engine.next_cursor_id();
    push(r);
    count(ok_kind, e);
    slot.status.store(CursorSlot::kFree, std::memory_order_release);
    return err(e);
  };
  auto run_body = [&](auto& cursor, VmSpace::Cursor* ro, VmSpace::CursorMut* mut) {
    r.cursor = engine.next_cursor_id();
    r.before = r.after = cursor.virt_addr();
    slot.since_ns.store(engine.now_ns(), std::memory_order_relaxed);
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

  VmSpace& sp = *engine.spaces[space];
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

void Worker::check_exclusion(std::size_t space, VaRange range, std::uint64_t cursor) {
  // Our slot is published as held (seq_cst) before this scan: of two threads holding
  // overlapping cursors at once, the later one to publish sees the other's slot.
  for (const auto& other : engine.workers()) {
    if (other.get() == this) continue;
    for (const CursorSlot& s : other->slots) {
      const std::uint64_t s1 = s.seq.load(std::memory_order_acquire);
      if ((s1 & 1) != 0 || s.status.load(std::memory_order_seq_cst) != CursorSlot::kHeld) continue;
      const std::uint16_t sp = s.space.load(std::memory_order_acquire);
      const VaRange r{s.start.load(std::memory_order_acquire), s.end.load(std::memory_order_acquire)};
      if (s.seq.load(std::memory_order_acquire) != s1) continue;  // rewritten meanwhile
      if (sp != space || r.start >= range.end || range.start >= r.end) continue;
      std::string what = "thread t" + std::to_string(index) + " was granted cursor " + std::to_string(cursor) +
                         " over [" + hex(range.start) + ", " + hex(range.end) + ") of space " + std::to_string(space) +
                         " while thread t" + std::to_string(other->index) + " held a cursor over [" + hex(r.start) +
                         ", " + hex(r.end) + ")";
      engine.online_finding(std::move(what));
      return;
    }
  }
}

namespace {

Record op_record(const StressCursor& c, Worker& w, RecKind k, std::uint64_t cursor_id) {
  Record r;
  r.kind = k;
  r.cursor = cursor_id;
  r.range = c.range();
  r.space = static_cast<std::uint16_t>(c.space());
  r.thread = static_cast<std::uint8_t>(w.index);
  r.before = c.virt_addr();
  return r;
}

void set_error(Record& r, Error e) {
  r.ok = false;
  r.error = e;
  r.pt_error = last_page_table_error().value_or(PageTableError::InvalidVaddr);
}

}  // namespace

Result<std::pair<VaRange, std::optional<VmQueriedItem>>> Worker::cursor_query(StressCursor& c) {
  Record r = op_record(c, *this, RecKind::Query, c.id_);
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

Result<std::optional<Vaddr>> Worker::cursor_find_next(StressCursor& c, std::size_t len) {
  Record r = op_record(c, *this, RecKind::FindNext, c.id_);
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

Result<void> Worker::cursor_jump(StressCursor& c, Vaddr va) {
  Record r = op_record(c, *this, RecKind::Jump, c.id_);
  r.target = va;
  auto j = c.mut_ ? c.mut_->jump(va) : c.ro_->jump(va);
  r.after = c.virt_addr();
  if (!j) set_error(r, j.error());
  push(r);
  count(OpKind::Jump, j ? std::nullopt : std::optional<Error>(j.error()));
  return j;
}

Result<void> Worker::cursor_map(StressCursor& c, bool huge, PageProperty prop) {
  const OpKind kind = huge ? OpKind::MapHuge : OpKind::Map;
  if (!c.mut_) return err(Error::InvalidArgs);
  Record r = op_record(c, *this, RecKind::Map, c.id_);
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

Result<std::size_t> Worker::cursor_unmap(StressCursor& c, std::size_t len) {
  if (!c.mut_) return err(Error::InvalidArgs);
  Record r = op_record(c, *this, RecKind::Unmap, c.id_);
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

Result<std::optional<VaRange>> Worker::cursor_protect(StressCursor& c, std::size_t len, const ProtectChange& change) {
  if (!c.mut_) return err(Error::InvalidArgs);
  Record r = op_record(c, *this, RecKind::Protect, c.id_);
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

// ---- Engine ----

Engine::Engine(const StressOptions& o, OpMix m) : options(o), mix(m) {
  leaf = Region{"leaf", kLeafRegion};
  overlap_region = Region{"overlap", kOverlapRegion};
  span = Region{"span", kSpanRegion};
  regions = stress_regions(o.threads);
}

Engine::~Engine() = default;

std::int64_t Engine::now_ns() const noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_).count();
}

void Engine::worker_ready(bool ok) {
  std::unique_lock<std::mutex> lk(m_);
  if (ok) {
    ++ready_;
  } else {
    ++ready_failed_;
  }
  cv_coord_.notify_all();
  cv_workers_.wait(lk, [&] { return go_ || stop_.load(std::memory_order_relaxed); });
}

void Engine::worker_exited() {
  std::lock_guard<std::mutex> lk(m_);
  ++exited_;
  cv_coord_.notify_all();
}

void Engine::park(Worker& w) {
  std::unique_lock<std::mutex> lk(m_);
  w.state.store(WorkerState::Parked, std::memory_order_relaxed);
  ++parked_;
  cv_coord_.notify_all();
  const std::uint64_t gen = generation_;
  cv_workers_.wait(lk, [&] { return generation_ != gen; });
  w.state.store(WorkerState::Running, std::memory_order_relaxed);
}

void Engine::pause_all() {
  pause_.store(true, std::memory_order_release);
  std::unique_lock<std::mutex> lk(m_);
  cv_coord_.wait(lk, [&] { return parked_ + exited_ >= workers_.size(); });
}

void Engine::release_all(bool stop) {
  std::lock_guard<std::mutex> lk(m_);
  parked_ = 0;
  if (stop) stop_.store(true, std::memory_order_release);
  pause_.store(false, std::memory_order_release);
  ++generation_;
  cv_workers_.notify_all();
}

void Engine::online_finding(std::string what) {
  std::fprintf(stderr, "vmspace-stress: violation (online mutual-exclusion check): %s\n", what.c_str());
  {
    LockGuard<Mutex> lk(online_m_);
    online_.push_back(std::move(what));
  }
  request_checkpoint();
}

std::uint64_t Engine::total_ops() const noexcept {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->ops();
  return n;
}

void Engine::fill_counts(StressReport& report) const {
  report.counts = {};
  for (const auto& w : workers_) {
    for (std::size_t k = 0; k < kOpKinds; ++k) {
      for (std::size_t o = 0; o < kOutcomes; ++o) report.counts[k][o] += w->counts[k][o].load(std::memory_order_relaxed);
    }
  }
  report.total_ops = 0;
  for (std::size_t k = 0; k < kOpKinds; ++k) {
    if (k == static_cast<std::size_t>(OpKind::Fault)) continue;
    for (std::uint64_t v : report.counts[k]) report.total_ops += v;
  }
}

void Engine::add_findings(std::vector<Finding>& findings, StressReport& report) {
  std::lock_guard<std::mutex> lk(report_m_);
  for (Finding& f : findings) {
    ++report.violations_total;
    if (!report.history && f.history) report.history = std::move(f.history);
    if (report.violations.size() < options.max_violations) {
      report.violations.push_back(StressViolation{std::move(f.kind), std::move(f.description)});
    }
  }
  findings.clear();
}

void Engine::checker_main() {
  std::unique_lock<std::mutex> lk(ck_m_);
  for (;;) {
    ck_cv_.wait(lk, [&] { return ck_job_.has_value() || ck_stop_; });
    if (!ck_job_) return;
    Checker::Job job = std::move(*ck_job_);
    ck_job_.reset();
    ck_busy_ = true;
    lk.unlock();
    std::vector<Finding> found;
    const std::size_t n = checker_->run_job(job, options.minimize_seconds, found);
    const std::size_t copies = job.copies.size();
    lk.lock();
    ck_records_ += n;
    ck_copies_ += copies;
    for (Finding& f : found) ck_findings_.push_back(std::move(f));
    ck_busy_ = false;
    ck_cv_.notify_all();
  }
}

void Engine::wait_checker_idle(std::unique_lock<std::mutex>& lk) {
  ck_cv_.wait(lk, [&] { return !ck_job_.has_value() && !ck_busy_; });
}

void Engine::checkpoint(StressReport& report, bool final) {
  checking_.store(true, std::memory_order_release);
  const auto started = std::chrono::steady_clock::now();
  rcu_barrier();  // every deferred free has run: the refcount law and frame slots are exact
  std::vector<Finding> findings;
  {
    LockGuard<Mutex> lk(online_m_);
    for (std::string& f : online_) findings.push_back(Finding{"exclusion", std::move(f), {}});
    online_.clear();
  }

  // Invariants: they need the quiescent state itself.
  check::CheckReport inv;
  check::RawRefs refs;
  for (const auto& s : spaces) check::check_user_table(s->page_table(), inv, &refs);
  check::check_page_table(kernel_page_table(), inv, &refs);
  check::check_frame_slots(inv);
  check::check_refcount_law(refs, inv);
  check::check_tlb_coherence(inv);
  for (const check::Violation& v : inv.violations()) findings.push_back(Finding{"invariant", v.rule + ": " + v.detail, {}});

  // No TLB hit on a freed frame.
  const std::uint64_t stale = tlb_stale_hits() - stale_base_;
  if (stale > stale_reported_) {
    findings.push_back(Finding{"tlb", std::to_string(stale - stale_reported_) +
                                          " TLB hit(s) used a frame that was freed after the entry was filled "
                                          "(see the vmspace log for addresses)",
                               {}});
    stale_reported_ = stale;
  }
  // Every unmap that removed frames handed them to the TLB dispatcher (they must stay alive
  // until the flush: tlb.hpp).
  std::uint64_t unmaps = 0;
  for (const auto& w : workers_) unmaps += w->unmaps_with_frames;
  const std::uint64_t kept = tlb_dispatch_stats().frames_kept - kept_base_;
  if (kept < unmaps) {
    findings.push_back(Finding{"tlb", std::to_string(unmaps) + " unmaps removed frames but TLB dispatches kept only " +
                                          std::to_string(kept) +
                                          " frames alive until their flush: frames were released before "
                                          "the shootdown",
                               {}});
  }
  kept_base_ += kept;
  for (const auto& w : workers_) w->unmaps_with_frames = 0;

  // Hand the segment to the checker thread: the tables as they are now, and every thread's
  // records merged in ticket order (each thread's are in ticket order already).
  Checker::Job job;
  for (const auto& s : spaces) job.actual.push_back(check::interpret(s->page_table()));
  std::size_t total = 0;
  for (const auto& w : workers_) total += w->records.size();
  job.records.reserve(total);
  {
    using Head = std::pair<std::uint64_t, std::size_t>;  // (ticket, worker)
    std::vector<std::size_t> pos(workers_.size(), 0);
    std::vector<Head> heap;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (!workers_[i]->records.empty()) heap.emplace_back(workers_[i]->records[0].ticket, i);
    }
    auto cmp = [](const Head& a, const Head& b) { return a.first > b.first; };
    std::make_heap(heap.begin(), heap.end(), cmp);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), cmp);
      const std::size_t i = heap.back().second;
      heap.pop_back();
      const auto& recs = workers_[i]->records;
      job.records.push_back(recs[pos[i]++]);
      if (pos[i] < recs.size()) {
        heap.emplace_back(recs[pos[i]].ticket, i);
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
  }
  for (auto& w : workers_) {
    w->records.clear();
    job.copies.insert(job.copies.end(), w->copies.begin(), w->copies.end());
    w->copies.clear();
    job.runs.push_back(std::move(w->runs));
    w->runs.clear();
    job.new_writes.push_back(std::move(w->writes));
    w->write_base += job.new_writes.back().size();
    w->writes.clear();
  }
  {
    // One segment in flight at most: if the checker is still busy, the workers wait here.
    std::unique_lock<std::mutex> lk(ck_m_);
    wait_checker_idle(lk);
    ck_job_.emplace(std::move(job));
    ck_cv_.notify_all();
    if (final) wait_checker_idle(lk);
    for (Finding& f : ck_findings_) findings.push_back(std::move(f));
    ck_findings_.clear();
    report.records_replayed = ck_records_;
    report.copies_checked = ck_copies_;
  }

  add_findings(findings, report);
  report.check_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  report.checkpoints = checkpoints_.fetch_add(1, std::memory_order_relaxed) + 1;
  checking_.store(false, std::memory_order_release);
}

void Engine::watchdog_main() {
  std::uint64_t last_ticket = ticket_.load(std::memory_order_relaxed);
  std::uint64_t last_cp = checkpoints_.load(std::memory_order_relaxed);
  auto last_change = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lk(wd_m_);
  while (!wd_stop_) {
    wd_cv_.wait_for(lk, std::chrono::milliseconds(100));
    if (wd_stop_) break;
    const std::uint64_t t = ticket_.load(std::memory_order_relaxed);
    const std::uint64_t cp = checkpoints_.load(std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    if (t != last_ticket || cp != last_cp || checking_.load(std::memory_order_acquire)) {
      last_ticket = t;
      last_cp = cp;
      last_change = now;
      continue;
    }
    const double stalled = std::chrono::duration<double>(now - last_change).count();
    if (stalled >= options.watchdog_seconds) deadlock(stalled);
  }
}

void Engine::deadlock(double stalled) {
  StressReport report;
  std::unique_lock<std::mutex> report_lock(report_m_);
  if (live_report_ != nullptr) {
    // Copy what the coordinator knows (it is blocked waiting for the workers, not writing).
    report.violations = live_report_->violations;
    report.violations_total = live_report_->violations_total;
  }
  report_lock.unlock();
  {
    LockGuard<Mutex> lk(online_m_);
    for (const std::string& f : online_) {
      ++report.violations_total;
      report.violations.push_back(StressViolation{"exclusion", f});
    }
  }
  report.checkpoints = checkpoints_.load(std::memory_order_relaxed);
  report.profile = options.profile;
  report.threads = options.threads;
  report.spaces = options.spaces;
  report.seed = options.seed;
  report.mutation = options.mutation;
  fill_counts(report);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  report.ops_per_second = report.seconds > 0 ? static_cast<double>(report.total_ops) / report.seconds : 0;
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  os << "no operation completed for " << stalled << " s; what every worker holds or waits for:";
  const std::int64_t now = now_ns();
  static constexpr const char* kStates[] = {"starting", "running", "copying", "in the page-fault handler", "parked",
                                            "exited"};
  for (const auto& w : workers_) {
    const auto st = static_cast<std::size_t>(w->state.load(std::memory_order_relaxed));
    os << "\n    t" << w->index << " (cpu " << w->cpu_id.load(std::memory_order_relaxed) << "): " << kStates[st]
       << " for " << static_cast<double>(now - w->state_since_ns.load(std::memory_order_relaxed)) / 1e9 << " s";
    for (const CursorSlot& s : w->slots) {
      const auto status = s.status.load(std::memory_order_acquire);
      if (status == CursorSlot::kFree) continue;
      const std::uint16_t sp = s.space.load(std::memory_order_relaxed);
      const VaRange r{s.start.load(std::memory_order_relaxed), s.end.load(std::memory_order_relaxed)};
      os << "; " << (status == CursorSlot::kHeld ? "holds " : "waits for ")
         << (s.mut.load(std::memory_order_relaxed) ? "cursor_mut" : "cursor") << " [" << hex(r.start) << ", "
         << hex(r.end) << ") of space " << sp << " since "
         << static_cast<double>(now - s.since_ns.load(std::memory_order_relaxed)) / 1e9 << " s";
      if (status != CursorSlot::kWaiting) continue;
      std::string holders;
      for (const auto& o : workers_) {
        for (const CursorSlot& h : o->slots) {
          if (h.status.load(std::memory_order_acquire) != CursorSlot::kHeld || h.space.load(std::memory_order_relaxed) != sp) continue;
          const VaRange hr{h.start.load(std::memory_order_relaxed), h.end.load(std::memory_order_relaxed)};
          if (hr.start < r.end && r.start < hr.end) holders += (holders.empty() ? "" : ", ") + ("t" + std::to_string(o->index));
        }
      }
      os << (holders.empty() ? " (no worker holds an overlapping cursor: a page-table node was left locked)"
                             : " (overlapping cursors held by " + holders + ")");
    }
  }
  ++report.violations_total;
  report.violations.push_back(StressViolation{"deadlock", os.str()});
  if (options.on_deadlock) {
    options.on_deadlock(report);
  } else {
    std::fputs(report.to_text().c_str(), stderr);
    std::fputc('\n', stderr);
  }
  std::fflush(nullptr);
  std::_Exit(3);
}

StressReport Engine::run() {
  StressReport report;
  report.profile = options.profile;
  report.threads = options.threads;
  report.spaces = options.spaces;
  report.seed = options.seed;
  report.mutation = options.mutation;
  live_report_ = &report;

  if (options.threads == 0 || options.threads > 255) {
    report.setup_error = "threads must be 1..255";
    return report;
  }
  if (options.spaces == 0 || options.spaces > 64) {
    report.setup_error = "spaces must be 1..64";
    return report;
  }
  if (options.ops == 0 && !(options.seconds > 0)) {
    report.setup_error = "give a positive duration or an operation count";
    return report;
  }
  if (in_atomic_mode()) {
    report.setup_error = "run() called in atomic mode";
    return report;
  }
#ifdef VMSPACE_MUTATIONS
  testing::set_mutation(options.mutation);
#else
  if (options.mutation != testing::Mutation::None) {
    report.setup_error = "this build has no mutation switches (configure with -Dmutations=true)";
    return report;
  }
#endif
  if (!is_booted()) {
    BootConfig cfg;
    cfg.phys_mem_bytes = options.phys_mem_bytes;
    cfg.num_cpus = options.threads + 1;
    if (auto b = boot(cfg); !b) {
      report.setup_error = std::string("boot failed: ") + std::string(vmspace::to_string(b.error()));
      return report;
    }
  }
  if (num_cpus() < options.threads) {
    report.setup_error = "the machine has " + std::to_string(num_cpus()) + " CPUs; " +
                         std::to_string(options.threads) + " workers need one each";
    return report;
  }

  rcu_barrier();
  const std::uint64_t free_before = global_frame_allocator().free_bytes();
  const TlbCheckMode prev_mode = tlb_check_mode();
  set_tlb_check_mode(TlbCheckMode::Count);
  stale_base_ = tlb_stale_hits();
  kept_base_ = tlb_dispatch_stats().frames_kept;
  const std::uint64_t dispatches_before = tlb_dispatch_stats().dispatches;
  const FaultStats faults_before = fault_stats();

  for (unsigned i = 0; i < options.spaces; ++i) {
    auto s = VmSpace::create();
    if (!s) {
      report.setup_error = "VmSpace::create failed";
      spaces.clear();
      set_tlb_check_mode(prev_mode);
      return report;
    }
    spaces.push_back(std::move(*s));
  }
  checker_ = std::make_unique<Checker>(spaces.size(), options.threads);
  checker_thread_ = std::thread([this] { checker_main(); });
  auto prev_handler = inject_user_page_fault_handler([](const PageFaultInfo& info) -> Result<void> {
    Worker* w = t_worker;
    if (w == nullptr) return err(Error::PageFault);
    return w->handle_fault(info);
  });

  t0_ = std::chrono::steady_clock::now();
  std::seed_seq seq{options.seed, options.seed >> 32};
  std::vector<std::uint32_t> seeds(options.threads * 2);
  seq.generate(seeds.begin(), seeds.end());
  for (unsigned i = 0; i < options.threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(
        *this, i, (std::uint64_t{seeds[2 * i]} << 32) | seeds[2 * i + 1]));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers_) threads.emplace_back([&w] { w->thread_main(); });
  bool started = false;
  {
    std::unique_lock<std::mutex> lk(m_);
    cv_coord_.wait(lk, [&] { return ready_ + ready_failed_ == workers_.size(); });
    started = ready_failed_ == 0;
    if (!started) {
      stop_.store(true, std::memory_order_release);
      report.setup_error = std::to_string(ready_failed_) +
                           " worker(s) found no free emulated CPU (another thread holds it)";
    }
    go_ = true;
    cv_workers_.notify_all();
  }

  std::thread watchdog;
  if (started) watchdog = std::thread([this] { watchdog_main(); });
  const auto t_start = std::chrono::steady_clock::now();
  const auto deadline = t_start + std::chrono::microseconds(static_cast<std::int64_t>(options.seconds * 1e6));
  auto last_cp = t_start;
  std::uint64_t ops_at_cp = 0;
  while (started) {
    bool final = false;
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      const auto now = std::chrono::steady_clock::now();
      const std::uint64_t ops = total_ops();
      if (options.ops != 0 ? ops >= options.ops : now >= deadline) {
        final = true;
        break;
      }
      if (urgent_.exchange(false, std::memory_order_relaxed) || ops - ops_at_cp >= options.checkpoint_ops ||
          std::chrono::duration<double, std::milli>(now - last_cp).count() >= options.checkpoint_ms) {
        break;
      }
    }
    pause_all();
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    checkpoint(report, final);
    if (report.violations_total > 0 && options.stop_on_violation && !final) {
      // Collect what the checker finds in this last segment too.
      final = true;
      checkpoint(report, true);
    }
    last_cp = std::chrono::steady_clock::now();
    ops_at_cp = total_ops();
    release_all(final);
    if (final) break;
  }
  for (auto& t : threads) t.join();
  {
    std::lock_guard<std::mutex> lk(ck_m_);
    ck_stop_ = true;
  }
  ck_cv_.notify_all();
  checker_thread_.join();
  if (watchdog.joinable()) {
    {
      std::lock_guard<std::mutex> lk(wd_m_);
      wd_stop_ = true;
    }
    wd_cv_.notify_all();
    watchdog.join();
  }
  {
    std::lock_guard<std::mutex> lk(report_m_);
    live_report_ = nullptr;
  }

  fill_counts(report);
  report.ops_per_second = report.seconds > 0 ? static_cast<double>(report.total_ops) / report.seconds : 0;
  inject_user_page_fault_handler(std::move(prev_handler));
  // Teardown and the leak check.
  spaces.clear();
  workers_.clear();
  rcu_barrier();
  report.tlb_stale_hits = tlb_stale_hits() - stale_base_;
  report.tlb_dispatches = tlb_dispatch_stats().dispatches - dispatches_before;
  const FaultStats faults_after = fault_stats();
  report.faults_handled = faults_after.handled - faults_before.handled;
  report.faults_refused = (faults_after.unresolved - faults_before.unresolved) +
                          (faults_after.refused - faults_before.refused);
  set_tlb_check_mode(prev_mode);
  const std::uint64_t free_after = global_frame_allocator().free_bytes();
  report.leaked_bytes = static_cast<std::int64_t>(free_before) - static_cast<std::int64_t>(free_after);
  if (started && report.leaked_bytes != 0) {
    ++report.violations_total;
    report.violations.push_back(StressViolation{
        "leak", std::to_string(report.leaked_bytes) + " bytes of physical memory are not free after every space "
                                                      "was dropped and rcu_barrier()"});
  }
#ifdef VMSPACE_MUTATIONS
  testing::set_mutation(testing::Mutation::None);
#endif
  return report;
}

}  // namespace detail

StressReport run(const StressOptions& options) {
  detail::Engine engine(options, options.mix.value_or(default_mix(options.profile)));
  return engine.run();
}

}  // namespace vmspace::stress
