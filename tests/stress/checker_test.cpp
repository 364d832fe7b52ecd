// The checker on hand-written histories (suite `stress`): every kind of violation it claims to
// find is found, consistent results pass, and the shortest-history search reduces. These prove
// the checks can fail without needing a broken library.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include <vmspace/user_pt_config.hpp>

#include "checker.hpp"
#include "record.hpp"

using namespace vmspace;
using namespace vmspace::stress;
using namespace vmspace::stress::internal;
using Cat = Mismatch::Category;

namespace {

const PageProperty kRw = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
constexpr Vaddr kA = 0x4000000;  // 64 MiB

// Builds histories the way the engine records them: each operation starts where the previous
// one of its cursor left the cursor (map() jumps first when needed).
struct History {
  std::vector<Record> recs;
  std::uint64_t ticket = 0;
  std::map<std::uint64_t, std::size_t> last;  // cursor -> index of its latest record

  Record& add(RecKind k, std::uint64_t cursor, VaRange range, std::uint8_t thread = 0) {
    Record r;
    r.ticket = ++ticket;
    r.kind = k;
    r.cursor = cursor;
    r.range = range;
    r.thread = thread;
    r.mut = true;
    auto it = last.find(cursor);
    r.before = r.after = it == last.end() ? range.start : recs[it->second].after;
    last[cursor] = recs.size();
    recs.push_back(r);
    return recs.back();
  }
  Record& open(std::uint64_t cursor, VaRange range, std::uint8_t thread = 0) {
    return add(RecKind::Open, cursor, range, thread);
  }
  Record& close(std::uint64_t cursor, VaRange range, std::uint8_t thread = 0) {
    return add(RecKind::Close, cursor, range, thread);
  }
  Record& jump(std::uint64_t cursor, VaRange range, Vaddr to) {
    Record& r = add(RecKind::Jump, cursor, range);
    r.target = to;
    r.after = to;
    return r;
  }
  Vaddr position(std::uint64_t cursor, VaRange range) const {
    auto it = last.find(cursor);
    return it == last.end() ? range.start : recs[it->second].after;
  }
  Record& map(std::uint64_t cursor, VaRange range, Vaddr at, Paddr pa) {
    if (position(cursor, range) != at) jump(cursor, range, at);
    Record& r = add(RecKind::Map, cursor, range);
    r.after = at + kPageSize;
    r.pa = pa;
    r.level = 1;
    r.prop = kRw;
    return r;
  }
};

check::AbstractModel fresh_model() {
  return check::AbstractModel(check::model_config<UserPtConfig>());
}

std::optional<Mismatch> replay_all(const std::vector<Record>& recs, check::AbstractModel& m) {
  Replay replay({&m}, Replay::Mode::Strict);
  for (const Record& r : recs) {
    if (auto mm = replay.apply(r)) return mm;
  }
  return std::nullopt;
}

}  // namespace

TEST_SUITE("stress") {
  TEST_CASE("checker_accepts_a_consistent_history") {
    History h;
    const VaRange r{kA, kA + 4 * kPageSize};
    h.open(1, r);
    h.map(1, r, kA, 0x100000);
    h.jump(1, r, kA);
    Record& q = h.add(RecKind::Query, 1, r);
    q.has_value = true;
    q.out_range = {kA, kA + kPageSize};
    q.out_pa = 0x100000;
    q.out_level = 1;
    q.out_prop = kRw;
    q.out_prop.flags |= PageFlags::ACCESSED;  // set by the MMU: ignored
    h.jump(1, r, kA + kPageSize);
    Record& absent = h.add(RecKind::Query, 1, r);
    absent.out_range = {kA + kPageSize, kA + 2 * kPageSize};
    h.close(1, r);
    h.open(2, r, 1);  // another thread, after the close: fine
    auto m = fresh_model();
    auto mm = replay_all(h.recs, m);
    CHECK_MESSAGE(!mm.has_value(), (mm ? mm->text : std::string()));
  }

  TEST_CASE("checker_finds_overlapping_cursors_of_two_threads") {
    History h;
    h.open(1, {kA, kA + 3 * kPageSize}, 0);
    h.open(2, {kA + 2 * kPageSize, kA + 5 * kPageSize}, 1);
    auto m = fresh_model();
    auto mm = replay_all(h.recs, m);
    REQUIRE(mm.has_value());
    CHECK(mm->category == Cat::ExclusionBroken);
    CHECK(mm->text.find("still open") != std::string::npos);
  }

  TEST_CASE("checker_finds_a_granted_self_overlap_and_a_failed_blocking_open") {
    History h;
    h.open(1, {kA, kA + 3 * kPageSize}, 0);
    Record& nested = h.open(2, {kA + kPageSize, kA + 2 * kPageSize}, 0);
    nested.nested = true;
    auto m = fresh_model();
    auto mm = replay_all(h.recs, m);
    REQUIRE(mm.has_value());
    CHECK(mm->category == Cat::NestedGranted);

    History b;
    Record& o = b.open(1, {kA, kA + kPageSize}, 0);
    o.ok = false;
    o.pt_error = PageTableError::WouldBlock;
    o.error = Error::WouldBlock;
    auto m2 = fresh_model();
    auto mb = replay_all(b.recs, m2);
    REQUIRE(mb.has_value());
    CHECK(mb->category == Cat::Contention);
    o.nested = true;  // a nested request may fail with WouldBlock
    auto m3 = fresh_model();
    CHECK_FALSE(replay_all(b.recs, m3).has_value());
  }

  TEST_CASE("checker_finds_wrong_results") {
    const VaRange r{kA, kA + 4 * kPageSize};
    SUBCASE("a query that misses a mapping") {
      History h;
      h.open(1, r);
      h.map(1, r, kA, 0x100000);
      h.jump(1, r, kA);
      Record& q = h.add(RecKind::Query, 1, r);
      q.out_range = {kA, kA + kPageSize};
      auto m = fresh_model();
      auto mm = replay_all(h.recs, m);
      REQUIRE(mm.has_value());
      CHECK(mm->text.find("the model has") != std::string::npos);
    }
    SUBCASE("an absent entry whose range covers a mapping") {
      History h;
      h.open(1, r);
      h.map(1, r, kA + kPageSize, 0x100000);
      Record& q = h.add(RecKind::Query, 1, r);
      q.out_range = {kA, kA + (2u << 20)};  // a whole absent 2 MiB entry: but kA+4K is mapped
      auto m = fresh_model();
      REQUIRE(replay_all(h.recs, m).has_value());
    }
    SUBCASE("a map that should have failed") {
      History h;
      h.open(1, r);
      h.map(1, r, kA, 0x100000);
      h.map(1, r, kA, 0x200000);  // over the first: the model says AlreadyMapped
      auto m = fresh_model();
      auto mm = replay_all(h.recs, m);
      REQUIRE(mm.has_value());
      CHECK(mm->text.find("AlreadyMapped") != std::string::npos);
    }
    SUBCASE("an unmap count that cannot be") {
      History h;
      h.open(1, r);
      h.map(1, r, kA, 0x100000);
      h.map(1, r, kA + kPageSize, 0x101000);
      h.jump(1, r, kA);
      Record& u = h.add(RecKind::Unmap, 1, r);
      u.after = kA + 4 * kPageSize;
      u.len = 4 * kPageSize;
      u.count = 3;  // two frames were mapped
      auto m = fresh_model();
      REQUIRE(replay_all(h.recs, m).has_value());
      u.count = 2;
      auto m2 = fresh_model();
      CHECK_FALSE(replay_all(h.recs, m2).has_value());
    }
    SUBCASE("a cursor that ends in the wrong place") {
      History h;
      h.open(1, r);
      Record& f = h.add(RecKind::FindNext, 1, r);
      f.len = 2 * kPageSize;
      f.after = kA + kPageSize;  // nothing mapped: the model's cursor ends at kA + 2 pages
      auto m = fresh_model();
      auto mm = replay_all(h.recs, m);
      REQUIRE(mm.has_value());
      CHECK(mm->text.find("ends at") != std::string::npos);
    }
  }

  TEST_CASE("shortest_failing_history_drops_unrelated_records") {
    History h;
    const VaRange r{kA, kA + 16 * kPageSize};
    for (std::uint64_t c = 1; c <= 16; ++c) {
      h.open(c, r);
      h.map(c, r, kA + (c % 16) * kPageSize, 0x100000 + c * kPageSize);
      h.close(c, r);
    }
    // Cursor 16 mapped page kA. A query claiming nothing is there fails.
    h.open(100, r);
    Record& q = h.add(RecKind::Query, 100, r);
    q.out_range = {kA, kA + kPageSize};
    auto m = fresh_model();
    Replay replay({&m}, Replay::Mode::Strict);
    std::size_t fail = 0;
    std::optional<Mismatch> mm;
    for (std::size_t i = 0; i < h.recs.size() && !mm; ++i) {
      mm = replay.apply(h.recs[i]);
      fail = i;
    }
    REQUIRE(mm.has_value());
    const FailingHistory fh = shortest_failing_history(fresh_model(), h.recs, fail, *mm, 10.0);
    CHECK(fh.minimal);
    CHECK(fh.candidates > 20);
    // The map of page kA (with its cursor's open and close) and the failing query's open.
    CHECK(fh.records.size() <= 5);
    bool has_map = false;
    for (const std::string& s : fh.records)
      has_map = has_map || s.find("map frame 0x110000") != std::string::npos;
    CHECK(has_map);
  }

  TEST_CASE("checker_finds_bad_copies_and_refinement_differences") {
    Checker checker(1, 2);
    Checker::Job job;
    History h;
    const VaRange r{kA, kA + 4 * kPageSize};
    h.open(1, r);
    h.map(1, r, kA, 0x100000);
    h.close(1, r);
    job.records = h.recs;
    // Thread 1 read kA..+16 through a mapped page, yet "faulted" on it: unexplained.
    CopyRecord faulty;
    faulty.start = 10;
    faulty.end = 11;
    faulty.va = kA;
    faulty.len = 16;
    faulty.copied = 0;
    faulty.faulted = true;
    faulty.thread = 1;
    // Thread 1 read a word that thread 0's write #0 put at another address.
    CopyRecord read;
    read.start = 12;
    read.end = 13;
    read.va = kA + 64;
    read.len = 8;
    read.copied = 8;
    read.thread = 1;
    read.runs_begin = 0;
    read.runs_end = 1;
    job.copies = {faulty, read};
    job.runs.resize(2);
    job.runs[1].push_back(ReadRun{kA + 64, 1, 1, 0, 0});  // writer t0 + 1, seq 0, word 0
    job.new_writes.resize(2);
    job.new_writes[0].push_back(WriteInfo{9, kA + 128, 8, 0});
    // The table at the quiescent point lacks the mapping the records made.
    job.actual.push_back({});
    std::vector<Finding> out;
    checker.run_job(job, 1.0, out);
    int copy = 0, refinement = 0;
    for (const Finding& f : out) {
      if (f.kind == "copy") ++copy;
      if (f.kind == "refinement") ++refinement;
    }
    CHECK(copy == 2);
    CHECK(refinement == 1);
    // After a refinement difference the model follows the table again.
    CHECK(checker.model(0).size() == 0);
  }
}
