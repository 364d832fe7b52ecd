// Internal: Recorder, one worker's recorded operations (what StressContext and StressCursor
// forward to): each cursor operation and copy runs on the library, draws its ticket and is
// recorded for the checker; CursorSlot and WorkerStatus publish what the worker holds and does.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include <vmspace/frame.hpp>
#include <vmspace/segment.hpp>
#include <vmspace/stress.hpp>
#include <vmspace/vm_space.hpp>

#include "record.hpp"

namespace vmspace::stress::internal {

class Engine;

// What other threads can see of a cursor a worker holds or waits for: the watchdog prints it,
// and every cursor creation scans the other workers' held slots (the online mutual-exclusion
// check). `seq` is odd while the owner rewrites the range fields (a seqlock).
struct CursorSlot {
  enum : std::uint8_t { kFree = 0, kWaiting = 1, kHeld = 2 };
  std::atomic<std::uint64_t> seq{0};
  std::atomic<std::uint8_t> status{kFree};
  std::atomic<std::uint8_t> mut{0};
  std::atomic<std::uint16_t> space{0};
  std::atomic<std::uint64_t> start{0};
  std::atomic<std::uint64_t> end{0};
  std::atomic<std::int64_t> since_ns{0};
};

enum class WorkerState : std::uint8_t { Starting, Running, Copying, Faulting, Parked, Exited };

// What a worker is doing and since when, for the watchdog's deadlock report.
struct WorkerStatus {
  std::atomic<WorkerState> state{WorkerState::Starting};
  std::atomic<int> cpu_id{-1};
  std::atomic<std::int64_t> since_ns{0};

  void set(WorkerState s, std::int64_t now_ns) noexcept {
    since_ns.store(now_ns, std::memory_order_relaxed);
    state.store(s, std::memory_order_relaxed);
  }
};

enum class CopyDirection : std::uint8_t { Read, Write };
enum class MapSize : std::uint8_t { Frame, Huge };

class Recorder {
 public:
  static constexpr std::size_t kSlots = 4;

  Recorder(Engine& engine, unsigned index, WorkerStatus& status) noexcept
      : engine_(engine), index_(index), status_(status) {}

  // ---- what StressContext forwards to ----
  Result<void> with_cursor(std::size_t space, VaRange range, CursorKind kind, LockMode mode,
                           const std::function<void(StressCursor&)>& body);
  Result<StressContext::CopyResult> copy(CopyDirection direction, Vaddr va, std::size_t len);
  Result<void> activate(std::optional<std::size_t> space);
  std::optional<std::size_t> active_space() const noexcept { return active_; }
  // Forgets the active space (the worker deactivated it on its way out).
  void clear_active() noexcept { active_.reset(); }

  // ---- what StressCursor forwards to ----
  Result<std::pair<VaRange, std::optional<VmQueriedItem>>> cursor_query(StressCursor& c);
  Result<std::optional<Vaddr>> cursor_find_next(StressCursor& c, std::size_t len);
  Result<void> cursor_jump(StressCursor& c, Vaddr va);
  Result<void> cursor_map(StressCursor& c, MapSize size, PageProperty prop);
  Result<std::size_t> cursor_unmap(StressCursor& c, std::size_t len);
  Result<std::optional<VaRange>> cursor_protect(StressCursor& c, std::size_t len,
                                                const ProtectChange& change);

  // Counts one operation of kind `k` with outcome `e` (nullopt: success).
  void count(OpKind k, std::optional<Error> e) noexcept;
  std::uint64_t ops() const noexcept { return ops_.load(std::memory_order_relaxed); }

  // Recorded since the last checkpoint (the coordinator reads and clears them only while the
  // worker is parked).
  std::vector<Record> records;
  std::vector<CopyRecord> copies;
  std::vector<ReadRun> runs;
  // The writes since the last checkpoint; write_base is the sequence number of writes[0].
  std::vector<WriteInfo> writes;
  std::uint64_t write_base = 0;
  // Unmaps that returned a non-zero frame count (each handed frames to the TLB dispatcher).
  std::uint64_t unmaps_with_frames = 0;

  // Read by other threads at any time (the counters for reports, the slots for the online
  // exclusion check and the deadlock report).
  std::array<std::array<std::atomic<std::uint64_t>, kOutcomes>, kOpKinds> counts{};
  std::array<CursorSlot, kSlots> slots{};

 private:
  struct Held {
    std::size_t space;
    VaRange range;
  };

  void push(Record& r);
  void check_exclusion(std::size_t space, VaRange range, std::uint64_t cursor);
  Record op_record(const StressCursor& c, RecKind k) const;

  Engine& engine_;
  const unsigned index_;
  WorkerStatus& status_;
  std::optional<std::size_t> active_;
  std::atomic<std::uint64_t> ops_{0};
  std::vector<Held> held_;
  // A zeroed frame / 2 MiB segment whose map failed: the next map uses it instead of
  // allocating and zeroing again (it was never visible to anyone, so it is still zero).
  std::optional<UFrame> spare_frame_;
  std::optional<USegment> spare_huge_;
  std::vector<std::uint64_t> buf_;
};

}  // namespace vmspace::stress::internal
