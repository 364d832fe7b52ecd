// libFuzzer target `vmspace-fuzz`: decodes the input into a page-table format and a sequence of
// cursor operations (open, nested open, close, query, find_next, jump, map, unmap, take_next,
// protect_next, protect), runs them on a real page table and on the abstract model side by side
// (tests/support/pt_harness.hpp), and aborts with a readable report at the first difference:
// a result that differs from the model's, interpret(table) != model, or a violated invariant.
//
// Input layout (every byte is consumed modulo the size of the table it indexes, so every input
// is valid and mutations stay meaningful):
//   byte 0        the format: x86-64 (1 GiB leaves), x86-64 kernel-style (2 MiB leaves, top
//                 level pinned), RISC-V Sv48 (512 GiB leaves), RISC-V Sv39, AArch64
//   then ops      an opcode byte followed by the operands that op reads (see decode_op)
// The operands are the symbolic ones of the model tests (a length "to the end of the range", an
// address "next 2 MiB boundary"), so a byte means the same thing in whatever state it lands.
//
// Per step: the op's results against the model and interpret(table) == model plus the table
// invariants (check_page_table). At every close and at the end: frame slots and the refcount
// law after an RCU barrier, then every node freed with the table.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include <vmspace/boot.hpp>
#include <vmspace/frame_allocator.hpp>

#include "pt_harness.hpp"
#include "raw_pt_config.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

constexpr std::size_t kMaxOps = 64;  // keeps one execution short; longer inputs are truncated
// After every op but a close (a cursor is usually open): the model and the table invariants.
const StateCheckOptions kStepChecks{.refcount_law = false, .frame_slots = false};

class ByteReader {
 public:
  ByteReader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const noexcept { return pos_ >= size_; }
  // The next byte, or 0 past the end (so a truncated op still decodes).
  std::uint8_t byte() noexcept { return pos_ < size_ ? data_[pos_++] : 0; }
  template <class T, std::size_t N>
  const T& pick(const T (&table)[N]) noexcept {
    return table[byte() % N];
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

constexpr std::int64_t k4K = static_cast<std::int64_t>(kSz4K);
constexpr std::int64_t k2M = static_cast<std::int64_t>(kSz2M);

// Offsets from the interesting points of a config's range (docs/spec_cases.md, "Random generation":
// 2 MiB boundaries near ends).
constexpr std::uint64_t kOffsets[] = {0,
                                      kSz4K,
                                      2 * kSz4K,
                                      kSz2M - kSz4K,
                                      kSz2M,
                                      kSz2M + kSz4K,
                                      2 * kSz2M,
                                      2 * kSz2M + 2 * kSz4K,
                                      kSz1G - kSz2M,
                                      3 * kSz4K};
constexpr std::uint64_t kRangeLens[] = {kSz4K,         2 * kSz4K, 4 * kSz4K, kSz2M,
                                        kSz2M + kSz4K, 2 * kSz2M, 3 * kSz2M, kSz1G,
                                        kSz1G + kSz2M, kSz512G,   0,         kSz4K + 1};

Vaddr point(ByteReader& in, const check::ModelConfig& cfg) {
  const std::uint8_t b = in.byte();
  const std::uint64_t off = kOffsets[(b >> 2) % std::size(kOffsets)];
  switch (b & 3) {
    case 0:
      return cfg.first + off;
    case 1:
      return cfg.first + kSz1G + off;
    case 2:
      return cfg.first + kSz512G + off;
    default:
      return cfg.last + 1 - (off == 0 ? kSz2M : off);
  }
}

VaRange range(ByteReader& in, const check::ModelConfig& cfg) {
  const std::uint8_t shape = in.byte();
  Vaddr start = point(in, cfg);
  if ((shape & 0x1f) == 0x1f) start += 1;  // unaligned
  switch ((shape >> 5) % 8) {
    case 0:
      return VaRange{start, point(in, cfg)};  // may be empty or reversed
    case 1:
      return VaRange{start, cfg.last + 1};  // to the end of the config's range
    default:
      return VaRange{start, start + in.pick(kRangeLens)};
  }
}

LenSpec len(ByteReader& in) {
  using B = LenSpec::Base;
  static constexpr LenSpec kLens[] = {{B::Fixed, 0, 0},          {B::Fixed, kSz4K, 0},
                                      {B::Fixed, 2 * kSz4K, 0},  {B::Fixed, kSz2M, 0},
                                      {B::Fixed, kSz2M, -k4K},   {B::Fixed, kSz2M, k4K},
                                      {B::Fixed, kSz1G, 0},      {B::Rest, 0, 0},
                                      {B::Rest, 0, -k4K},        {B::Rest, 0, k4K},
                                      {B::ToBoundary, kSz2M, 0}, {B::ToBoundary, kSz2M, k4K},
                                      {B::ToBoundary, kSz1G, 0}, {B::Fixed, kSz4K - 1, 0},
                                      {B::Fixed, 0, -k4K},       {B::Rest, 0, 0}};
  return in.pick(kLens);
}

AddrSpec jump_target(ByteReader& in, const check::ModelConfig& cfg) {
  using B = AddrSpec::Base;
  static constexpr AddrSpec kTargets[] = {{B::Start, 0, 0},
                                          {B::Start, 0, -k4K},
                                          {B::Start, 0, k2M + 2 * k4K},
                                          {B::End, 0, 0},
                                          {B::End, 0, -k4K},
                                          {B::End, 0, -k2M},
                                          {B::Cur, 0, k4K},
                                          {B::Cur, 0, -k4K},
                                          {B::Cur, 0, 1},
                                          {B::NextBoundary, kSz2M, 0},
                                          {B::NextBoundary, kSz2M, k4K},
                                          {B::NextBoundary, kSz1G, 0},
                                          {B::NextBoundary, kSz512G, 0},
                                          {B::Start, 0, k2M},
                                          {B::Start, 0, k4K}};
  const std::uint8_t b = in.byte();
  if (b == 0xff) return AddrSpec{B::Abs, point(in, cfg), 0};
  return kTargets[b % std::size(kTargets)];
}

PageProperty prop(ByteReader& in) {
  static constexpr PageFlags kFlags[] = {PageFlags::RW,
                                         PageFlags::R,
                                         PageFlags::RWX,
                                         PageFlags::RX,
                                         PageFlags::None,
                                         PageFlags::W,
                                         PageFlags::RW | PageFlags::ACCESSED | PageFlags::DIRTY,
                                         PageFlags::R | PageFlags::AVAIL2,
                                         static_cast<PageFlags>(0x21)};
  static constexpr CachePolicy kCaches[] = {CachePolicy::Writeback,    CachePolicy::Writeback,
                                            CachePolicy::Uncacheable,  CachePolicy::WriteCombining,
                                            CachePolicy::Writethrough, CachePolicy::WriteProtected};
  static constexpr PrivilegedPageFlags kPriv[] = {
      PrivilegedPageFlags::None, PrivilegedPageFlags::USER, PrivilegedPageFlags::GLOBAL,
      PrivilegedPageFlags::AVAIL1, PrivilegedPageFlags::SHARED};
  PageProperty p;
  p.flags = in.pick(kFlags);
  p.cache = in.pick(kCaches);
  p.priv_flags = in.pick(kPriv);
  return p;
}

ProtSpec prot(ByteReader& in) {
  static constexpr PageFlags kKeep[] = {PageFlags::None, PageFlags::RWX, PageFlags::R};
  static constexpr PageFlags kAdd[] = {PageFlags::R, PageFlags::RW, PageFlags::RX, PageFlags::None,
                                       PageFlags::W};
  static constexpr CachePolicy kCaches[] = {CachePolicy::Uncacheable, CachePolicy::WriteCombining,
                                            CachePolicy::WriteProtected, CachePolicy::Writethrough,
                                            CachePolicy::Writeback};
  static constexpr PrivilegedPageFlags kToggle[] = {
      PrivilegedPageFlags::None,   PrivilegedPageFlags::None,   PrivilegedPageFlags::USER,
      PrivilegedPageFlags::GLOBAL, PrivilegedPageFlags::AVAIL1, PrivilegedPageFlags::SHARED};
  ProtSpec p;
  p.keep = in.pick(kKeep);
  p.add = in.pick(kAdd);
  const std::uint8_t cache = in.byte();
  p.set_cache = cache % 4 == 0;
  p.cache = kCaches[(cache / 4) % std::size(kCaches)];
  p.toggle = in.pick(kToggle);
  return p;
}

PtOp decode_op(ByteReader& in, const PtModel& m) {
  using K = PtOp::Kind;
  const check::ModelConfig& cfg = m.model.config();
  static constexpr K kKinds[] = {K::Open,    K::Nested,       K::Close, K::Query, K::FindNext,
                                 K::Jump,    K::Map,          K::Map,   K::Unmap, K::TakeNext,
                                 K::Protect, K::ProtectRange, K::Jump,  K::Map};
  PtOp op;
  op.kind = in.pick(kKinds);
  switch (op.kind) {
    case K::Open:
    case K::Nested: {
      const std::uint8_t how = in.byte();
      op.mut = (how & 3) != 0;
      op.try_lock = (how & 4) != 0;
      op.range = range(in, cfg);
      break;
    }
    case K::FindNext:
    case K::Unmap:
    case K::TakeNext:
      op.len = len(in);
      break;
    case K::Protect:
    case K::ProtectRange:
      op.len = len(in);
      op.prot = prot(in);
      break;
    case K::Jump:
      op.addr = jump_target(in, cfg);
      break;
    case K::Map: {
      const std::uint8_t b = in.byte();
      // Mostly levels 1..highest; sometimes one too high or 0.
      const unsigned span = cfg.highest_level + 2u;
      op.level = static_cast<PagingLevel>(b % span == cfg.highest_level + 1u ? 0 : b % span);
      const std::uint8_t pa = in.byte();
      op.pa.slot = pa & 3;
      op.pa.sub = (pa >> 2) & 3;
      op.pa.misalign = (pa & 0xf0) == 0xf0;
      op.pa.at_limit = (pa & 0xf0) == 0xe0;
      op.prop = prop(in);
      break;
    }
    case K::Close:
    case K::Query:
      break;
  }
  return op;
}

[[noreturn]] void fail(const std::string& format, const std::string& trace,
                       const std::string& what) {
  std::fprintf(stderr, "vmspace-fuzz: model mismatch on %s\nops:\n%s%s\n", format.c_str(),
               trace.c_str(), what.c_str());
  std::fflush(stderr);
  std::abort();
}

template <PageTableConfig C>
void run(const char* format, ByteReader& in) {
  rcu_barrier();
  const std::uint64_t free_before = global_frame_allocator().free_bytes();
  std::ostringstream trace;
  {
    PtModel m(check::model_config<C>());
    auto s = PtSystem<C>::create();
    // At quiescent points: everything, with the kernel table's part computed once (the raw
    // tables never touch it; walking its linear mapping would dominate an execution).
    StateCheckOptions full;
    full.kernel_refs = &kernel_table_refs();
    auto full_check = [&](const char* when) {
      if (auto d = check_state(m, s, full); !d.empty())
        fail(format, trace.str(), std::string(when) + ":\n" + d);
    };
    for (std::size_t n = 0; n < kMaxOps && !in.empty(); ++n) {
      const PtOp op = decode_op(in, m);
      if (!m.applicable(op)) continue;
      trace << "  " << op << "\n";
      if (auto d = step(m, s, op); !d.empty()) fail(format, trace.str(), d);
      if (op.kind == PtOp::Kind::Close) {
        full_check("after close");
      } else if (auto d = check_state(m, s, kStepChecks); !d.empty()) {
        fail(format, trace.str(), d);
      }
    }
    s.close();
    m.cursor.reset();
    full_check("at the end");
  }
  rcu_barrier();
  if (global_frame_allocator().free_bytes() != free_before) {
    fail(format, trace.str(), "dropping the table did not free every node");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  BootConfig config;
  config.phys_mem_bytes = std::uint64_t{64} << 20;  // small: the slot walks stay cheap
  config.num_cpus = 2;
  if (!is_booted()) (void)boot(config);
  (void)kernel_table_refs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  ByteReader in(data, size);
  switch (in.byte() % 5) {
    case 0:
      run<RawPtConfig<X86_64Pte, 3>>("x86-64 (1 GiB leaves)", in);
      break;
    case 1:
      run<RawPtConfig<X86_64Pte, 2, false>>("x86-64 kernel-style (2 MiB leaves, top level pinned)",
                                            in);
      break;
    case 2:
      run<RawPtConfig<RiscvSv48Pte, 4>>("riscv-sv48 (512 GiB leaves)", in);
      break;
    case 3:
      run<RawPtConfig<RiscvSv39Pte, 3>>("riscv-sv39 (1 GiB leaves)", in);
      break;
    default:
      run<RawPtConfig<Aarch64Pte, 3>>("aarch64 (1 GiB leaves)", in);
      break;
  }
  return 0;
}
