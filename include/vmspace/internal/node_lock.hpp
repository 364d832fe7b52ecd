// Internal: not API; may change without notice.
//
// The 32-bit page-table node lock and the per-thread cursor bookkeeping (OSTD keeps its node
// lock in `ostd/src/mm/page_table/node/mod.rs`; the bookkeeping has no OSTD counterpart, see
// "Deadlock freedom" in page_table/locking.hpp).
#pragma once

#include <cstdint>

#include <vmspace/addr.hpp>

namespace vmspace::internal {

// A node lock is one 32-bit word in the node's metadata:
//   0                     free
//   (token << 1) | w      held by the thread with `token`; w = 1 when someone sleeps on it
// The owner token lets a thread recognise a node it holds itself (WouldDeadlock instead of a
// hang). Acquire spins briefly, then sleeps on the word (futex, via Boost.Atomic wait/notify),
// so more threads than cores make progress.
enum class LockWait : std::uint8_t { Block, Try };
enum class LockResult : std::uint8_t { Acquired, WouldBlock, WouldDeadlock };

// This thread's owner token (non-zero, 31 bits, unique per thread for the process lifetime).
std::uint32_t thread_token() noexcept;

// The word value of a node born locked by the calling thread.
inline std::uint32_t locked_by_me() noexcept { return thread_token() << 1; }

LockResult node_lock(std::uint32_t& word, LockWait wait) noexcept;
void node_unlock(std::uint32_t& word) noexcept;
// True if the calling thread holds the lock (for assertions).
bool node_locked_by_me(std::uint32_t& word) noexcept;

// How many cursors the calling thread holds on the page table whose root is `root`. A thread
// that already holds one never blocks creating another in the same table: it gets WouldBlock
// instead, because waiting while holding locks outside the DFS order could deadlock with
// another thread (see page_table/locking.hpp, "Deadlock freedom").
std::uint32_t cursors_held(Paddr root) noexcept;
// Records one more cursor on `root`. Returns false (recording nothing) if the thread already
// holds cursors on kMaxTablesWithCursors other tables.
inline constexpr std::size_t kMaxTablesWithCursors = 16;
bool note_cursor_acquired(Paddr root) noexcept;
void note_cursor_released(Paddr root) noexcept;

}  // namespace vmspace::internal
