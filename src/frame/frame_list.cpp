// Ids for LinkedList<M> (frame_list.hpp): every list gets a distinct id, which a frame's
// MetaSlot::in_list records so that a list can tell its own frames from other lists'.
#include <vmspace/frame_list.hpp>
#include <vmspace/log.hpp>

namespace vmspace::internal {

std::atomic<std::uint64_t> g_next_frame_list_id{1};

std::uint64_t allocate_frame_list_id() noexcept {
  // Relaxed: ids only need to be distinct.
  const std::uint64_t id = g_next_frame_list_id.fetch_add(1, std::memory_order_relaxed);
  if (id >= kMaxFrameListId) {
    VMS_PANIC(
        "frame list ids are exhausted: id {:#x} would reach 2^62, whose bits tag the frame "
        "allocator's free blocks in MetaSlot::in_list",
        id);
  }
  return id;
}

}  // namespace vmspace::internal
