// Bounded exhaustive refinement test (suite `model`): every sequence of up to 4 operations
// drawn from a fixed alphabet of 16 operation shapes — jumps to the addresses around a 2 MiB
// boundary and to the cursor's range end; maps of a 4 KiB and a 2 MiB page; unmaps of one page,
// two pages (straddling), 2 MiB and the rest of the range; protect_next of one page; a range
// protect of the rest; a single take_next; a query; a find_next; a nested cursor — runs on a
// fresh table from two initial states (empty, and one with a 2 MiB page next to 4 KiB pages),
// with every op's results compared with the model's, the state (interpret == model, table
// invariants) after the last op and everything again after closing the cursor.
// 2 × (16 + 16² + 16³ + 16⁴) = 139808 sequences.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "pt_harness.hpp"
#include "raw_pt_config.hpp"
#include "rc_support.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

using Config = RawPtConfig<X86_64Pte>;  // OSTD's x86-64: leaves up to 2 MiB

// The cursor's range: from 2 MiB below a 2 MiB boundary to two pages past the next one, so
// both a 2 MiB-aligned slot and a range end that is not 2 MiB-aligned are reachable.
constexpr Vaddr kBase = kSz1G;
constexpr VaRange kRange{kBase, kBase + 2 * kSz2M + 2 * kSz4K};

std::vector<PtOp> alphabet() {
  std::vector<PtOp> ops;
  auto jump = [&](std::uint64_t abs) {
    PtOp op;
    op.kind = PtOp::Kind::Jump;
    op.addr = AddrSpec{AddrSpec::Base::Abs, abs, 0};
    ops.push_back(op);
  };
  jump(kBase + kSz2M - kSz4K);
  jump(kBase + kSz2M);
  jump(kBase + kSz2M + kSz4K);
  jump(kRange.end - kSz4K);
  auto map = [&](PagingLevel level, std::uint8_t sub) {
    PtOp op;
    op.kind = PtOp::Kind::Map;
    op.level = level;
    op.pa = PaSpec{1, sub, false, false};
    op.prop = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
    ops.push_back(op);
  };
  map(1, 3);
  map(2, 1);
  auto with_len = [&](PtOp::Kind kind, LenSpec len) {
    PtOp op;
    op.kind = kind;
    op.len = len;
    op.prot = ProtSpec{PageFlags::None, PageFlags::R, false, CachePolicy::Writeback,
                       PrivilegedPageFlags::None};
    ops.push_back(op);
  };
  const LenSpec page{LenSpec::Base::Fixed, kSz4K, 0};
  const LenSpec two{LenSpec::Base::Fixed, 2 * kSz4K, 0};
  const LenSpec huge{LenSpec::Base::Fixed, kSz2M, 0};
  const LenSpec rest{LenSpec::Base::Rest, 0, 0};
  with_len(PtOp::Kind::Unmap, page);
  with_len(PtOp::Kind::Unmap, two);
  with_len(PtOp::Kind::Unmap, huge);
  with_len(PtOp::Kind::Unmap, rest);
  with_len(PtOp::Kind::Protect, page);
  with_len(PtOp::Kind::ProtectRange, rest);
  with_len(PtOp::Kind::TakeNext, rest);
  with_len(PtOp::Kind::FindNext, rest);
  PtOp q;
  q.kind = PtOp::Kind::Query;
  ops.push_back(q);
  PtOp nested;
  nested.kind = PtOp::Kind::Nested;
  nested.range = VaRange{kBase - kSz4K, kBase};  // just before the held range
  ops.push_back(nested);
  return ops;
}

// Runs one sequence after `prefix` (maps made through a first cursor); returns "" or a report
// of the first difference. Every op's results are compared with the model's. The state checks
// (interpret == model, table invariants) run after the sequence's last op, with the cursor
// still open, and everything again after closing it: every shorter sequence is enumerated too,
// so the state after each op of a longer sequence is checked as the last state of its prefix
// (ops are deterministic), and checking it again would only multiply the cost. The prefix's
// own states are checked when `check_prefix` is set (once per prefix).
std::string run_sequence(const std::vector<PtOp>& prefix, const std::vector<PtOp>& seq,
                         bool check_prefix) {
  PtModel m(check::model_config<Config>());
  auto s = PtSystem<Config>::create();
  std::ostringstream trace;
  const StateCheckOptions cursor_checks{.refcount_law = false, .frame_slots = false};
  auto run = [&](const PtOp& op, bool check) -> std::string {
    trace << "  " << op << "\n";
    std::string d = step(m, s, op);
    if (d.empty() && check) d = check_state(m, s, cursor_checks);
    return d;
  };
  PtOp open;
  open.kind = PtOp::Kind::Open;
  open.range = kRange;
  for (const PtOp& op : prefix) {
    if (auto d = run(op, check_prefix); !d.empty()) return trace.str() + d;
  }
  if (auto d = run(open, check_prefix); !d.empty()) return trace.str() + d;
  for (std::size_t i = 0; i < seq.size(); ++i) {
    if (auto d = run(seq[i], i + 1 == seq.size()); !d.empty()) return trace.str() + d;
  }
  PtOp close;
  close.kind = PtOp::Kind::Close;
  if (auto d = run(close, false); !d.empty()) return trace.str() + d;
  StateCheckOptions full;
  full.kernel_refs = &kernel_table_refs();  // raw tables never change the kernel table
  if (auto d = check_state(m, s, full); !d.empty()) return trace.str() + "after close:\n" + d;
  return "";
}

}  // namespace

TEST_SUITE("model") {
  TEST_CASE("exhaustive_sequences_up_to_4_ops") {
    boot_for_models(std::uint64_t{8} << 20);  // raw items need no memory; slot walks stay short
    const std::vector<PtOp> ops = alphabet();
    REQUIRE(ops.size() == 16);
    // Initial states: empty; a 2 MiB page at the boundary with 4 KiB pages on both sides.
    std::vector<std::vector<PtOp>> prefixes(2);
    {
      PtOp open;
      open.kind = PtOp::Kind::Open;
      open.range = kRange;
      PtOp j;
      j.kind = PtOp::Kind::Jump;
      PtOp map4k = ops[4], map2m = ops[5];
      std::vector<PtOp>& p = prefixes[1];
      p.push_back(open);
      j.addr = AddrSpec{AddrSpec::Base::Abs, kBase + kSz2M - kSz4K, 0};
      p.push_back(j);
      p.push_back(map4k);
      p.push_back(map2m);
      p.push_back(map4k);
      PtOp close;
      close.kind = PtOp::Kind::Close;
      p.push_back(close);
    }
    std::uint64_t sequences = 0, failures = 0;
    std::vector<std::size_t> idx;
    for (const auto& prefix : prefixes) {
      bool check_prefix = true;
      for (std::size_t len = 1; len <= 4; ++len) {
        idx.assign(len, 0);
        for (;;) {
          std::vector<PtOp> seq;
          for (std::size_t i : idx) seq.push_back(ops[i]);
          const std::string d = run_sequence(prefix, seq, check_prefix);
          check_prefix = false;
          ++sequences;
          if (!d.empty() && ++failures <= 3) FAIL_CHECK("sequence failed:\n" << d);
          std::size_t k = 0;
          while (k < len && ++idx[k] == ops.size()) idx[k++] = 0;
          if (k == len) break;
        }
      }
    }
    MESSAGE(sequences << " sequences, " << failures << " failed");
    CHECK(failures == 0);
  }
}
