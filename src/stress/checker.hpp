// Internal: the serializability, refinement and copy checks of the stress engine.
//
// The checker owns one AbstractModel per space. At every quiescent point the engine hands it the
// records of the segment since the previous one; the checker replays them in ticket order (with
// the copies' start/end tickets interleaved), compares every observed result with the model's,
// then compares every model with the interpretation of the real table.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <vmspace/check/model.hpp>
#include <vmspace/stress.hpp>

#include "record.hpp"

namespace vmspace::stress::internal {

struct Finding {
  std::string kind;
  std::string description;
  std::optional<FailingHistory> history;
};

// A difference between an observed result and the model's. `category` lets the shortest-history
// search insist on reproducing the same kind of failure.
struct Mismatch {
  enum class Category : std::uint8_t {
    InvalidRange,     // cursor creation disagrees with the range checks
    Contention,       // a blocking, non-nested creation failed with WouldBlock/WouldDeadlock
    CreationError,    // any other creation error the model does not expect
    NestedGranted,    // a nested cursor overlapping the thread's own was granted
    ExclusionBroken,  // overlapping cursors of two threads open at once
    Recording,        // the records contradict themselves (strict replays only)
    Result,           // an operation's result differs
  };
  Category category;
  std::string text;
  // What the shortest-history search must reproduce: the kind of difference (e.g. "unmap count
  // under the model's"), coarser than the text, so unrelated mappings can be dropped. Empty:
  // the text itself.
  std::string signature;
};

// Replay state: models and the cursors open in ticket order.
class Replay {
 public:
  struct Open {
    std::uint64_t id;
    std::uint64_t ticket;
    std::uint16_t space;
    std::uint8_t thread;
    VaRange range;
    std::unique_ptr<check::ModelCursor> cursor;
    bool implicit = false;  // opened on demand by a lax replay: holds no locks
  };

  // How much a replay trusts the recording. A strict replay (the full history) also reports
  // records that contradict the recording itself (an operation on a cursor that is not open, a
  // cursor that moved between two operations); the lax replays of the shortest-history search
  // open missing cursors on demand instead.
  enum class Mode : std::uint8_t { Lax, Strict };

  // `models[i]` is the model of space i (not owned; null for spaces not replayed).
  Replay(std::vector<check::AbstractModel*> models, Mode mode)
      : models_(std::move(models)), strict_(mode == Mode::Strict) {}

  // Applies `r` to the model and returns how the observed result differs from the model's.
  std::optional<Mismatch> apply(const Record& r);

  check::AbstractModel& model(std::size_t space) { return *models_[space]; }

 private:
  std::optional<Mismatch> apply_open(const Record& r);
  std::optional<Mismatch> apply_op(const Record& r);

  std::vector<check::AbstractModel*> models_;
  bool strict_;
  std::unordered_map<std::uint64_t, Open> open_;
};

class Checker {
 public:
  Checker(std::size_t spaces, unsigned threads);

  // One segment between two quiescent points, handed over at the second one.
  struct Job {
    std::vector<Record> records;  // every thread's, in ticket order
    std::vector<CopyRecord> copies;
    std::vector<std::vector<ReadRun>> runs;          // per thread; CopyRecord::runs_* index them
    std::vector<std::vector<WriteInfo>> new_writes;  // per thread: the segment's writes, in order
    std::vector<std::vector<check::Mapping>>
        actual;  // per space: interpret() at the quiescent point
  };

  // Replays the segment, checks its copies and compares every model with the table at the
  // quiescent point. Returns the number of records replayed.
  std::size_t run_job(Job& job, double minimize_seconds, std::vector<Finding>& out);

  // Replays one segment (records in ticket order). `runs[t]` are thread t's read runs.
  std::size_t check_segment(std::vector<Record>& recs, std::vector<CopyRecord>& copies,
                            const std::vector<std::vector<ReadRun>>& runs, double minimize_seconds,
                            std::vector<Finding>& out);

  // Compares model i with `actual` (interpret() of space i's table). On a difference, reports
  // it with the segment's records touching the first differing address and resynchronises the
  // model with `actual`, so later segments are checked from the real state.
  // A space whose replay already failed in this segment is resynchronised without a second
  // report.
  void check_refinement(std::size_t space, const std::vector<check::Mapping>& actual,
                        const std::vector<Record>& segment_sorted, std::vector<Finding>& out);

  // Whether space i's replay failed in the last segment.
  bool replay_failed(std::size_t space) const { return space < failed_.size() && failed_[space]; }

  const check::AbstractModel& model(std::size_t space) const { return models_[space]; }

 private:
  std::vector<check::AbstractModel> models_;
  std::vector<bool> failed_;
  std::vector<std::vector<WriteInfo>> writes_;  // per thread, every write of the run by sequence
};

// Delta debugging over the records of one space that touch the failing record's range.
// `initial` is the model of the failing record's space at the segment's start; `sorted` the
// segment's records in ticket order; `fail` the index of the failing record.
FailingHistory shortest_failing_history(const check::AbstractModel& initial,
                                        const std::vector<Record>& sorted, std::size_t fail,
                                        const Mismatch& mismatch, double seconds);

}  // namespace vmspace::stress::internal
