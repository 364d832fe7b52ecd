// LinkedList<M>: an intrusive list of frames that needs no heap (OSTD
// `ostd/src/mm/frame/linked_list.rs`, `LinkedList` and `Link`).
//
// A frame can be put on a list when its metadata is Link<M>: the list links live inside the
// frame's MetaSlot, next to the user's metadata M. The list owns its members exactly like a
// UniqueFrame does (their reference count stays UNIQUE), so nobody can create a Frame handle
// for a frame while it is on a list, and dropping the list drops every member (on_drop runs
// and the frames go back to the global frame allocator).
//
// Every list has an id, drawn lazily from a global counter on the first insertion. A member's
// MetaSlot::in_list word holds that id (0 when the frame is on no list), which makes
// contains(paddr) and cursor_mut_at(paddr) O(1) for any physical address.
//
// Thread-safety: a list and its cursors are not synchronised; one thread at a time may use a
// list (and any cursor on it), as with any standard container. Different lists may be used
// concurrently. The in_list words are written atomically, so other code (the frame allocator's
// checks, contains() on another list) may read any slot's in_list at any time.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/intrusive/list.hpp>

#include <vmspace/assert.hpp>
#include <vmspace/io.hpp>
#include <vmspace/meta.hpp>
#include <vmspace/unique_frame.hpp>

namespace vmspace {

template <FrameMeta M>
class LinkedList;

namespace internal {

// List ids stay below 2^62: the built-in frame allocator tags the in_list words of free
// blocks with bits 62 and 63 (src/frame/frame_allocator.cpp), and a list id must never look like
// such a tag.
inline constexpr std::uint64_t kMaxFrameListId = std::uint64_t{1} << 62;

// The next id to hand out; starts at 1 (0 means "on no list"). Exposed for tests only.
extern std::atomic<std::uint64_t> g_next_frame_list_id;

// Draws a fresh list id. Aborts with a message if the ids are exhausted (>= kMaxFrameListId).
// Thread-safe.
std::uint64_t allocate_frame_list_id() noexcept;

template <class M>
concept HasOnDrop = requires(M& m, VmReader<Infallible>& r) {
  m.on_drop(r);
};

template <class M>
constexpr const char* link_type_name() noexcept {
  if constexpr (requires { M::kTypeName; }) {
    return M::kTypeName;
  } else {
    return "Link";
  }
}

}  // namespace internal

// Frame metadata that lets a frame join a LinkedList<M>: the list hook plus the user's M.
// It forwards M's kIsUntyped, on_drop and kTypeName, so a Link<M> frame behaves like an M frame
// (an untyped M gives an untyped Link<M>, which may be converted to UFrame).
//
// The hook takes 16 bytes of the 40 a MetaSlot offers, so M may use at most 24 (with an
// alignment of at most 16); a larger M is rejected at compile time.
template <FrameMeta M>
class Link {
 public:
  // A Link is untyped exactly when M is.
  static constexpr bool kIsUntyped = is_untyped_meta<M>();
  // "Link<" + M's name + ">", for messages.
  static constexpr const char* kTypeName = internal::link_type_name<M>();

  // Wraps `meta`; the new Link is on no list.
  explicit Link(M meta) noexcept(std::is_nothrow_move_constructible_v<M>) : meta_(std::move(meta)) {
    check_layout();
  }
  // Builds M in place from `args` (brace-initialised if M is an aggregate).
  template <class... Args>
  explicit Link(std::in_place_t, Args&&... args) : meta_(make_meta(std::forward<Args>(args)...)) {
    check_layout();
  }
  // Moving a Link moves the metadata; the new Link is on no list.
  Link(Link&& o) noexcept(std::is_nothrow_move_constructible_v<M>) : meta_(std::move(o.meta_)) {}
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;
  Link& operator=(Link&&) = delete;
  // The hook is in safe mode: destroying a Link that is still on a list asserts.
  ~Link() = default;

  // The inner metadata.
  M& get() noexcept { return meta_; }
  // The inner metadata, read-only.
  const M& get() const noexcept { return meta_; }
  // The inner metadata, as get().
  M& operator*() noexcept { return meta_; }
  // The inner metadata, read-only, as get().
  const M& operator*() const noexcept { return meta_; }
  // Member access to the inner metadata.
  M* operator->() noexcept { return &meta_; }
  // Member access to the inner metadata, read-only.
  const M* operator->() const noexcept { return &meta_; }

  // Forwards M::on_drop (exists only if M has one).
  void on_drop(VmReader<Infallible>& reader) requires internal::HasOnDrop<M> {
    meta_.on_drop(reader);
  }

 private:
  friend class LinkedList<M>;

  template <class... Args>
  static M make_meta(Args&&... args) {
    if constexpr (std::is_aggregate_v<M>) {
      return M{std::forward<Args>(args)...};
    } else {
      return M(std::forward<Args>(args)...);
    }
  }

  static constexpr void check_layout() noexcept {
    static_assert(sizeof(Link) <= kFrameMetadataMaxSize,
                  "Link<M>: M is too big to share a MetaSlot with the list hook (M may use at "
                  "most 24 of the slot's 40 metadata bytes)");
    static_assert(kFrameMetadataMaxAlign % alignof(Link) == 0,
                  "Link<M>: M's alignment must divide 64");
  }

  // Links to the neighbours; touched only by the LinkedList that owns the frame.
  boost::intrusive::list_member_hook<> hook_;
  M meta_;
};

// A doubly linked list of frames with Link<M> metadata, owning each member as a
// UniqueFrame<Link<M>> (see the file comment). No operation allocates heap memory.
//
// Moving a list moves its members and its id (cursors on either list become invalid); the
// moved-from list is empty. Destroying a list drops every member front to back.
template <FrameMeta M>
class LinkedList {
  using Hook = boost::intrusive::list_member_hook<>;
  using List =
      boost::intrusive::list<Link<M>, boost::intrusive::member_hook<Link<M>, Hook, &Link<M>::hook_>,
                             boost::intrusive::constant_time_size<true>>;
  using Iter = typename List::iterator;

  static_assert(sizeof(Link<M>) <= kFrameMetadataMaxSize,
                "LinkedList<M>: M is too big to share a MetaSlot with the list hook (M may use "
                "at most 24 of the slot's 40 metadata bytes)");

 public:
  // What the list holds and hands back.
  using Member = UniqueFrame<Link<M>>;

  // A position in a list: one of its members or the "ghost" past-the-end non-element. The
  // cursor borrows the list; it must not outlive it, and while a cursor is in use the list may
  // change only through that cursor. Moving past either end reaches the ghost; moving from
  // the ghost wraps around (move_next goes to the front, move_prev to the back).
  class CursorMut {
   public:
    // Towards the back: element -> next element (the last one -> ghost); ghost -> front (or
    // ghost if the list is empty).
    void move_next() noexcept {
      if (it_ == list_->list_.end()) {
        it_ = list_->list_.begin();
      } else {
        ++it_;
      }
    }
    // Towards the front: element -> previous element (the front -> ghost); ghost -> back (or
    // ghost if the list is empty).
    void move_prev() noexcept {
      if (it_ == list_->list_.begin()) {
        it_ = list_->list_.end();
      } else {
        --it_;
      }
    }

    // The current member's metadata, or nullptr at the ghost. Valid until the member leaves
    // the list.
    M* current_meta() noexcept { return it_ == list_->list_.end() ? nullptr : &it_->meta_; }

    // Removes the current member and returns it (its in_list becomes 0); the cursor moves to
    // the next member, or to the ghost if it was the last. At the ghost: nullopt, no change.
    std::optional<Member> take_current() noexcept { return list_->take(it_); }

    // Inserts `frame` before the current position; the cursor stays on the same element. At
    // the ghost the frame goes to the back. Precondition: `frame` is not empty (moved-from).
    void insert_before(Member frame) noexcept { list_->insert(it_, std::move(frame)); }

    // The list this cursor walks.
    const LinkedList& as_list() const noexcept { return *list_; }

   private:
    friend class LinkedList;
    CursorMut(LinkedList* list, Iter it) noexcept : list_(list), it_(it) {}

    LinkedList* list_;
    Iter it_;
  };

  LinkedList() noexcept = default;
  // Takes over `o`'s members and id; `o` becomes an empty list without an id.
  LinkedList(LinkedList&& o) noexcept : id_(std::exchange(o.id_, 0)) { list_.swap(o.list_); }
  // Drops this list's members, then takes over `o`'s members and id.
  LinkedList& operator=(LinkedList&& o) noexcept {
    if (this != &o) {
      clear();
      list_.swap(o.list_);
      id_ = std::exchange(o.id_, 0);
    }
    return *this;
  }
  LinkedList(const LinkedList&) = delete;
  LinkedList& operator=(const LinkedList&) = delete;
  ~LinkedList() { clear(); }

  // The number of members.
  std::size_t size() const noexcept { return list_.size(); }
  // True when the list has no member.
  bool is_empty() const noexcept { return list_.empty(); }

  // This list's id, or 0 if nothing was ever inserted (the id is drawn on first insertion).
  std::uint64_t id() const noexcept { return id_; }

  // Precondition for all pushes: `frame` is not empty.
  // Adds `frame` at the front; the list holds its reference.
  void push_front(Member frame) noexcept { insert(list_.begin(), std::move(frame)); }
  // Adds `frame` at the back; the list holds its reference.
  void push_back(Member frame) noexcept { insert(list_.end(), std::move(frame)); }

  // Removes and returns the front member; nullopt if the list is empty.
  std::optional<Member> pop_front() noexcept {
    Iter it = list_.begin();
    return take(it);
  }
  // Removes and returns the back member; nullopt if the list is empty.
  std::optional<Member> pop_back() noexcept {
    if (list_.empty()) return std::nullopt;
    Iter it = std::prev(list_.end());
    return take(it);
  }

  // True if the frame at `pa` is a member of this list. O(1). False for any address that
  // does not name a frame (misaligned, at or beyond max_paddr()); never aborts.
  bool contains(Paddr pa) const noexcept { return member_slot(pa) != nullptr; }

  // A cursor at the member at `pa`, or nullopt if contains(pa) is false.
  std::optional<CursorMut> cursor_mut_at(Paddr pa) noexcept {
    MetaSlot* slot = member_slot(pa);
    if (slot == nullptr) return std::nullopt;
    auto* link = std::launder(static_cast<Link<M>*>(slot->meta_ptr()));
    return CursorMut(this, list_.iterator_to(*link));
  }

  // A cursor at the front member, or at the ghost if the list is empty.
  CursorMut cursor_front_mut() noexcept { return CursorMut(this, list_.begin()); }
  // A cursor at the back member, or at the ghost if the list is empty.
  CursorMut cursor_back_mut() noexcept {
    return CursorMut(this, list_.empty() ? list_.end() : std::prev(list_.end()));
  }

  // Drops every member, front to back.
  void clear() noexcept {
    while (pop_front()) {
    }
  }

 private:
  static Paddr link_paddr(const Link<M>* link) noexcept {
    const auto offset = reinterpret_cast<std::uintptr_t>(link) -
                        reinterpret_cast<std::uintptr_t>(internal::g_meta_base);
    return static_cast<Paddr>(offset / kMetaSlotSize) << kPageShift;
  }

  MetaSlot* member_slot(Paddr pa) const noexcept {
    if (id_ == 0) return nullptr;  // never had a member
    auto slot = get_slot(pa);
    if (!slot) return nullptr;
    // Relaxed: only this list writes its id into slots, and it does so on this thread.
    if ((*slot)->in_list_ref().load(boost::memory_order_relaxed) != id_) return nullptr;
    return *slot;
  }

  void insert(Iter pos, Member frame) noexcept {
    MetaSlot* slot = frame.slot();
    VMS_ASSERT(slot != nullptr, "inserting an empty UniqueFrame into a frame list");
    VMS_DEBUG_ASSERT(slot->in_list_ref().load(boost::memory_order_relaxed) == 0,
                     "frame {:#x} is already on a list", frame.paddr());
    if (id_ == 0) id_ = internal::allocate_frame_list_id();
    list_.insert(pos, frame.meta_mut());
    slot->in_list_ref().store(id_, boost::memory_order_relaxed);
    // The list now owns the frame's sole reference; take() gives it back.
    (void)std::move(frame).into_raw();
  }

  // Removes *pos and advances pos to the next position. nullopt at the ghost.
  std::optional<Member> take(Iter& pos) noexcept {
    if (pos == list_.end()) return std::nullopt;
    const Paddr pa = link_paddr(&*pos);
    pos = list_.erase(pos);
    meta_slot(pa)->in_list_ref().store(0, boost::memory_order_relaxed);
    return Member::from_raw(pa);
  }

  List list_;
  std::uint64_t id_ = 0;
};

}  // namespace vmspace
