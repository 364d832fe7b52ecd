// Sets of dense ids: IdSet, a plain bitmap (AtomicIdSet, the bitmap of atomic words, is in
// atomic_id_set.hpp, which this header includes).
//
// These model OSTD's `IdSet<I>` / `AtomicIdSet<I>` and become `CpuSet` / `AtomicCpuSet` once
// instantiated with CpuId. The id type maps its values 1:1 onto the indices
// [0, Id::cardinality()); a set stores one bit per index, 64 to a word.
//
// Storage: an IdSet keeps up to kIdSetInlineIds (128) ids inline and allocates the words on the
// heap beyond that, so a CpuSet on a machine with at most 128 CPUs never allocates. The
// cardinality may be a runtime value (CpuId's is the CPU count, fixed after boot); every set
// captures it when it is constructed.
//
// Thread-safety: IdSet is a value type with no internal synchronization (like std::vector).
// AtomicIdSet may be used from any number of threads at once; see its comment for what is and
// is not atomic.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <ostream>
#include <ranges>
#include <span>
#include <utility>

#include <vmspace/assert.hpp>

namespace vmspace {

// An id type that IdSet can hold.
//
// Requirements that the compiler cannot check (an id type that breaks them breaks every set
// built on it):
//   - `Id::cardinality()` is the number of distinct ids. It is > 0, fits in 32 bits, and never
//     changes once it has been called (it may be computed at run time, e.g. after boot).
//   - `id.as_index()` < `Id::cardinality()` for every value `id`, and the mapping is 1:1:
//     `Id::from_index(id.as_index()) == id` and `Id::from_index(i).as_index() == i` for every
//     i < cardinality().
//   - `Id::from_index(i)` is only called with i < cardinality(); it need not check.
template <class T>
concept IdType = std::copyable<T> && std::equality_comparable<T> &&
    requires(const T& id, std::uint32_t index) {
  { T::cardinality() } -> std::convertible_to<std::uint32_t>;
  { id.as_index() } -> std::convertible_to<std::uint32_t>;
  { T::from_index(index) } -> std::same_as<T>;
};

// The number of ids an IdSet (and AtomicIdSet) stores without a heap allocation.
inline constexpr std::uint32_t kIdSetInlineIds = 128;

template <IdType Id>
class IdSet;
template <IdType Id>
class AtomicIdSet;

namespace internal {

inline constexpr std::size_t kIdSetWordBits = 64;
inline constexpr std::uint32_t kIdSetInlineWords = kIdSetInlineIds / kIdSetWordBits;

// The number of 64-bit words that hold `num_ids` bits.
constexpr std::uint32_t id_set_words_for(std::size_t num_ids) noexcept {
  return static_cast<std::uint32_t>((num_ids + kIdSetWordBits - 1) / kIdSetWordBits);
}

// The valid bits of the last word of a set of `num_ids` ids (all ones if it is full-width).
constexpr std::uint64_t id_set_last_word_mask(std::size_t num_ids) noexcept {
  const std::size_t used = num_ids % kIdSetWordBits;
  return used == 0 ? ~std::uint64_t{0} : (std::uint64_t{1} << used) - 1;
}

constexpr std::uint64_t id_set_bit(std::size_t index) noexcept {
  return std::uint64_t{1} << (index % kIdSetWordBits);
}

template <IdType Id>
std::uint32_t id_cardinality() noexcept {
  const auto num_ids = static_cast<std::uint32_t>(Id::cardinality());
  VMS_DEBUG_ASSERT(num_ids > 0, "an id type must have at least one id");
  return num_ids;
}

template <IdType Id>
std::uint32_t id_index(const Id& id) noexcept {
  return static_cast<std::uint32_t>(id.as_index());
}

template <class T>
concept Streamable = requires(std::ostream& os, const T& value) {
  os << value;
};

// Prints an id with its own operator<< if it has one, else as its index.
template <IdType Id>
void print_id(std::ostream& os, const Id& id) {
  if constexpr (Streamable<Id>) {
    os << id;
  } else {
    os << id_index(id);
  }
}

}  // namespace internal

// One end of an IdRange: an id that is included, an id that is excluded, or no limit.
// The C++ counterpart of Rust's `core::ops::Bound<Id>`.
template <IdType Id>
class IdBound {
 public:
  // Which of the three a bound is.
  enum class Kind : std::uint8_t { Included, Excluded, Unbounded };

  // A bound that includes `id` in the range.
  static IdBound included(const Id& id) noexcept {
    return IdBound(Kind::Included, internal::id_index(id));
  }
  // A bound that stops just before (or starts just after) `id`.
  static IdBound excluded(const Id& id) noexcept {
    return IdBound(Kind::Excluded, internal::id_index(id));
  }
  // No limit on this end.
  static IdBound unbounded() noexcept { return IdBound(Kind::Unbounded, 0); }

  // Included, excluded or unbounded.
  Kind kind() const noexcept { return kind_; }
  // The id this bound names. Precondition: kind() != Kind::Unbounded.
  Id id() const noexcept {
    VMS_DEBUG_ASSERT(kind_ != Kind::Unbounded, "an unbounded IdBound names no id");
    return Id::from_index(index_);
  }

  friend bool operator==(const IdBound&, const IdBound&) = default;

 private:
  IdBound(Kind kind, std::uint32_t index) noexcept : kind_(kind), index_(index) {}

  Kind kind_;
  std::uint32_t index_;  // The id's index; 0 (and meaningless) when unbounded.
};

// A range of ids selected by a lower and an upper IdBound; what IdSet::iter_in() takes.
//
// The named constructors mirror Rust's range syntax:
//   half_open(a, b)  a..b        closed(a, b)        a..=b
//   from(a)          a..         to(b)               ..b
//   to_inclusive(b)  ..=b        full()              ..
//   IdRange(lower, upper)        (Bound, Bound)
//
// A range whose lower end lies at or after its upper end is empty (OSTD panics when the start
// of the slice lies after its end; iterating an inverted range here simply yields nothing).
template <IdType Id>
class IdRange {
 public:
  // The type of either end.
  using Bound = IdBound<Id>;

  // The ids between `lower` and `upper`.
  IdRange(Bound lower, Bound upper) noexcept : lower_(lower), upper_(upper) {}

  // [first, end): Rust's `first..end`.
  static IdRange half_open(const Id& first, const Id& end) noexcept {
    return IdRange(Bound::included(first), Bound::excluded(end));
  }
  // [first, last]: Rust's `first..=last`.
  static IdRange closed(const Id& first, const Id& last) noexcept {
    return IdRange(Bound::included(first), Bound::included(last));
  }
  // `first` and every later id: Rust's `first..`.
  static IdRange from(const Id& first) noexcept {
    return IdRange(Bound::included(first), Bound::unbounded());
  }
  // Every id before `end`: Rust's `..end`.
  static IdRange to(const Id& end) noexcept {
    return IdRange(Bound::unbounded(), Bound::excluded(end));
  }
  // Every id up to and including `last`: Rust's `..=last`.
  static IdRange to_inclusive(const Id& last) noexcept {
    return IdRange(Bound::unbounded(), Bound::included(last));
  }
  // Every id: Rust's `..`.
  static IdRange full() noexcept { return IdRange(Bound::unbounded(), Bound::unbounded()); }

  // The lower end.
  const Bound& lower() const noexcept { return lower_; }
  // The upper end.
  const Bound& upper() const noexcept { return upper_; }

  // The half-open index interval [first, second) this range selects among `num_ids` ids.
  // Empty when first >= second. second never exceeds num_ids.
  std::pair<std::size_t, std::size_t> index_interval(std::uint32_t num_ids) const noexcept {
    // Indices are 32-bit, so `index + 1` cannot overflow a size_t.
    std::size_t first = 0;
    switch (lower_.kind()) {
      case Bound::Kind::Included:
        first = index_of(lower_);
        break;
      case Bound::Kind::Excluded:
        first = index_of(lower_) + 1;
        break;
      case Bound::Kind::Unbounded:
        first = 0;
        break;
    }
    std::size_t second = num_ids;
    switch (upper_.kind()) {
      case Bound::Kind::Included:
        second = index_of(upper_) + 1;
        break;
      case Bound::Kind::Excluded:
        second = index_of(upper_);
        break;
      case Bound::Kind::Unbounded:
        second = num_ids;
        break;
    }
    return {first, std::min<std::size_t>(second, num_ids)};
  }

  friend bool operator==(const IdRange&, const IdRange&) = default;

 private:
  static std::size_t index_of(const Bound& bound) noexcept {
    return internal::id_index(bound.id());
  }

  Bound lower_;
  Bound upper_;
};

// A set of ids of type Id: a bitmap with one bit per index in [0, Id::cardinality()).
//
// Value semantics: copying copies the bits; a moved-from set is empty (and keeps working).
// Sets with at most kIdSetInlineIds ids never allocate. Larger sets allocate their words the
// first time an id is added (new_empty() and the default constructor do not allocate); copying
// a non-empty large set allocates.
//
// Ids passed in must be valid ids of Id (as_index() < cardinality()); that is the id type's
// guarantee, checked only in debug builds.
//
// Not thread-safe: concurrent use needs external synchronization, or AtomicIdSet.
template <IdType Id>
class IdSet {
 public:
  class Iterator;
  class View;
  using value_type = Id;      // The element type.
  using Range = IdRange<Id>;  // A range of ids, for iter_in().
  using Bound = IdBound<Id>;  // One end of a Range.

  // An empty set. Does not allocate.
  IdSet() noexcept : num_ids_(internal::id_cardinality<Id>()), num_words_(0) {
    init_storage_unallocated();
  }
  // The set holding exactly `id`.
  explicit IdSet(const Id& id) : IdSet() { add(id); }

  // An empty set (OSTD's name for the default constructor).
  static IdSet new_empty() noexcept { return IdSet(); }
  // The set of every id of the type.
  static IdSet new_full() {
    IdSet set;
    set.add_all();
    return set;
  }

  // A copy of `other` (allocates if `other` does and has storage).
  IdSet(const IdSet& other) : num_ids_(other.num_ids_), num_words_(other.num_words_) {
    if (uses_heap()) {
      storage_.heap = num_words_ == 0 ? nullptr : new std::uint64_t[num_words_];
    } else {
      init_storage_unallocated();
    }
    std::copy_n(other.words(), num_words_, words());
  }
  // Takes over `other`'s ids (and heap storage); `other` is left empty.
  IdSet(IdSet&& other) noexcept : num_ids_(other.num_ids_), num_words_(other.num_words_) {
    if (uses_heap()) {
      storage_.heap = std::exchange(other.storage_.heap, nullptr);
    } else {
      init_storage_unallocated();
      std::copy_n(other.words(), num_words_, words());
    }
    other.num_words_ = 0;
  }
  // Makes this set equal to `other`, reusing this set's storage where it can.
  IdSet& operator=(const IdSet& other) {
    if (this == &other) return *this;
    // Same cardinality and storage in place (always for inline sets): copy without allocating.
    if (num_ids_ == other.num_ids_ && (!uses_heap() || num_words_ != 0)) {
      if (other.num_words_ == 0) {
        clear();
      } else {
        num_words_ = other.num_words_;
        std::copy_n(other.words(), num_words_, words());
      }
      return *this;
    }
    IdSet copy(other);
    swap(copy);
    return *this;
  }
  // Takes over `other`'s ids; `other` is left empty.
  IdSet& operator=(IdSet&& other) noexcept {
    IdSet moved(std::move(other));
    swap(moved);
    return *this;
  }
  ~IdSet() {
    if (uses_heap()) delete[] storage_.heap;
  }

  // Exchanges the contents of the two sets. Never allocates.
  void swap(IdSet& other) noexcept {
    std::swap(num_ids_, other.num_ids_);
    std::swap(num_words_, other.num_words_);
    std::swap(storage_, other.storage_);
  }
  friend void swap(IdSet& a, IdSet& b) noexcept { a.swap(b); }

  // Adds `id` (no effect if present). May allocate for a set beyond kIdSetInlineIds ids that
  // had no storage yet.
  void add(const Id& id) {
    const std::size_t index = checked_index(id);
    ensure_storage();
    words()[index / internal::kIdSetWordBits] |= internal::id_set_bit(index);
  }
  // Removes `id`; removing an id that is not in the set is fine and changes nothing.
  void remove(const Id& id) noexcept {
    const std::size_t index = checked_index(id);
    if (num_words_ == 0) return;
    words()[index / internal::kIdSetWordBits] &= ~internal::id_set_bit(index);
  }
  // True when `id` is in the set.
  bool contains(const Id& id) const noexcept {
    const std::size_t index = checked_index(id);
    return num_words_ != 0 &&
           (words()[index / internal::kIdSetWordBits] & internal::id_set_bit(index)) != 0;
  }

  // The number of ids in the set.
  std::size_t count() const noexcept {
    std::size_t total = 0;
    for (const std::uint64_t word : word_span()) total += std::popcount(word);
    return total;
  }
  // True when the set holds no id.
  bool is_empty() const noexcept {
    return std::ranges::all_of(word_span(), [](std::uint64_t word) { return word == 0; });
  }
  // True when every id of the type is in the set. The last word counts only its valid bits
  // (a set of 70 ids is full with 6 bits set in its second word).
  bool is_full() const noexcept {
    if (num_words_ == 0) return false;  // Cardinality is at least 1.
    const std::uint64_t* w = words();
    for (std::uint32_t i = 0; i + 1 < num_words_; ++i) {
      if (w[i] != ~std::uint64_t{0}) return false;
    }
    return w[num_words_ - 1] == internal::id_set_last_word_mask(num_ids_);
  }

  // Adds every id of the type. May allocate like add().
  void add_all() {
    ensure_storage();
    std::fill_n(words(), num_words_, ~std::uint64_t{0});
    words()[num_words_ - 1] = internal::id_set_last_word_mask(num_ids_);
  }
  // Removes every id. Keeps any storage, so refilling the set does not allocate.
  void clear() noexcept { std::fill_n(words(), num_words_, std::uint64_t{0}); }

  // Iterates over the ids in ascending order. The view (and its iterators) borrow the set:
  // they must not outlive it, and are invalidated by any change to it.
  View iter() const noexcept { return iter_in(Range::full()); }
  // Iterates, in ascending order, over the ids in the set that also lie in `range`. An empty
  // or inverted range yields nothing. Same borrowing rules as iter().
  View iter_in(const Range& range) const noexcept {
    auto [first, second] = range.index_interval(num_ids_);
    second = std::min<std::size_t>(second, std::size_t{num_words_} * internal::kIdSetWordBits);
    if (first >= second) first = second = 0;
    return View(words(), first, second);
  }
  // The first id, as iter().begin(), so a set works in a range-for loop.
  Iterator begin() const noexcept { return iter().begin(); }
  // Past the last id, as iter().end().
  Iterator end() const noexcept { return iter().end(); }

  // Sets of one id type compare by content.
  friend bool operator==(const IdSet& a, const IdSet& b) noexcept {
    const std::uint32_t n = std::max(a.num_words_, b.num_words_);
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::uint64_t wa = i < a.num_words_ ? a.words()[i] : 0;
      const std::uint64_t wb = i < b.num_words_ ? b.words()[i] : 0;
      if (wa != wb) return false;
    }
    return true;
  }

  // Prints "{a, b, c}" (ids through their own operator<<, if any, else as indices).
  friend std::ostream& operator<<(std::ostream& os, const IdSet& set) {
    os << '{';
    bool first = true;
    for (const Id& id : set) {
      if (!first) os << ", ";
      first = false;
      internal::print_id(os, id);
    }
    return os << '}';
  }

 private:
  friend class AtomicIdSet<Id>;

  // The words live inline for sets of up to kIdSetInlineIds ids, on the heap otherwise. A set
  // never changes from one to the other: that depends only on num_ids_.
  union Storage {
    std::uint64_t inline_words[internal::kIdSetInlineWords];
    std::uint64_t* heap;  // nullptr while num_words_ == 0.
  };

  bool uses_heap() const noexcept { return num_ids_ > kIdSetInlineIds; }
  std::uint64_t* words() noexcept { return uses_heap() ? storage_.heap : storage_.inline_words; }
  const std::uint64_t* words() const noexcept {
    return uses_heap() ? storage_.heap : storage_.inline_words;
  }
  std::span<const std::uint64_t> word_span() const noexcept { return {words(), num_words_}; }

  void init_storage_unallocated() noexcept {
    if (uses_heap()) {
      storage_.heap = nullptr;
    } else {
      std::fill_n(storage_.inline_words, internal::kIdSetInlineWords, std::uint64_t{0});
    }
  }
  // Gives a set without storage its (zeroed) words. Bits past num_ids_ are always zero.
  void ensure_storage() {
    if (num_words_ != 0) return;
    const std::uint32_t n = internal::id_set_words_for(num_ids_);
    if (uses_heap()) {
      VMS_DEBUG_ASSERT(storage_.heap == nullptr, "IdSet without words holds an allocation");
      storage_.heap = new std::uint64_t[n]();
    } else {
      std::fill_n(storage_.inline_words, internal::kIdSetInlineWords, std::uint64_t{0});
    }
    num_words_ = n;
  }
  std::size_t checked_index(const Id& id) const noexcept {
    const std::uint32_t index = internal::id_index(id);
    VMS_DEBUG_ASSERT(index < num_ids_, "id index {} out of range for cardinality {}", index,
                     num_ids_);
    return index;
  }

  std::uint32_t num_ids_;    // Id::cardinality() when the set was made.
  std::uint32_t num_words_;  // 0 (empty, no storage in use) or id_set_words_for(num_ids_).
  Storage storage_;
};

// A forward iterator over the ids of an IdSet (or of a slice of it), in ascending order.
// Dereferencing yields an Id by value. Walks a word at a time, skipping zero words.
template <IdType Id>
class IdSet<Id>::Iterator {
 public:
  using value_type = Id;                               // The element type.
  using difference_type = std::ptrdiff_t;              // Required by the iterator concepts.
  using iterator_concept = std::forward_iterator_tag;  // A forward iterator for C++20 ranges.
  // operator* returns a prvalue, so for the pre-C++20 iterator categories this is only an
  // input iterator (like std::ranges::iota_view's iterator).
  using iterator_category = std::input_iterator_tag;

  Iterator() noexcept = default;

  // The current id. Precondition: not at the end.
  Id operator*() const noexcept {
    VMS_DEBUG_ASSERT(bits_ != 0, "dereferencing an exhausted IdSet iterator");
    const std::size_t index =
        std::size_t{word_} * internal::kIdSetWordBits + std::countr_zero(bits_);
    return Id::from_index(static_cast<std::uint32_t>(index));
  }
  // Moves to the next id in the set.
  Iterator& operator++() noexcept {
    bits_ &= bits_ - 1;  // Drop the id just visited.
    settle();
    return *this;
  }
  // Moves to the next id and returns the old position.
  Iterator operator++(int) noexcept {
    Iterator old = *this;
    ++*this;
    return old;
  }
  // Meaningful between iterators over the same slice of the same set.
  friend bool operator==(const Iterator& a, const Iterator& b) noexcept {
    return a.word_ == b.word_ && a.bits_ == b.bits_;
  }

 private:
  friend class View;

  // The first id of the set in index interval [first, second), which lies within the words.
  Iterator(const std::uint64_t* words, std::size_t first, std::size_t second) noexcept
      : words_(words),
        end_word_(internal::id_set_words_for(second)),
        last_mask_(internal::id_set_last_word_mask(second)),
        word_(end_word_),
        bits_(0) {
    if (first >= second) return;
    word_ = static_cast<std::uint32_t>(first / internal::kIdSetWordBits);
    bits_ = masked_word(word_) & (~std::uint64_t{0} << (first % internal::kIdSetWordBits));
    settle();
  }
  // The past-the-end iterator of a slice ending at index `second`.
  static Iterator end_of(const std::uint64_t* words, std::size_t second) noexcept {
    return Iterator(words, second, second);
  }

  std::uint64_t masked_word(std::uint32_t i) const noexcept {
    const std::uint64_t word = words_[i];
    return i + 1 == end_word_ ? word & last_mask_ : word;
  }
  // Moves to the next non-zero word, or to the end state (word_ == end_word_, bits_ == 0).
  void settle() noexcept {
    while (bits_ == 0) {
      if (word_ + 1 >= end_word_) {
        word_ = end_word_;
        return;
      }
      ++word_;
      bits_ = masked_word(word_);
    }
  }

  const std::uint64_t* words_ = nullptr;
  std::uint32_t end_word_ = 0;   // Words [0, end_word_) hold the slice.
  std::uint64_t last_mask_ = 0;  // The slice's bits within word end_word_ - 1.
  std::uint32_t word_ = 0;       // The word being visited.
  std::uint64_t bits_ = 0;       // Its ids not yet visited (0 only at the end).
};

// The ids of an IdSet within an index interval, as a forward range and std::ranges::view.
// Borrows the set. (It derives from the view_base tag rather than view_interface: clang 14
// cannot instantiate libstdc++'s view_interface for a class nested in a template.)
template <IdType Id>
class IdSet<Id>::View : public std::ranges::view_base {
 public:
  View() noexcept = default;

  // The first id of the set in the interval.
  Iterator begin() const noexcept { return Iterator(words_, first_, second_); }
  // Past the last id of the interval.
  Iterator end() const noexcept { return Iterator::end_of(words_, second_); }
  // True when no id of the set lies in the interval.
  bool empty() const noexcept { return begin() == end(); }

 private:
  friend class IdSet;

  View(const std::uint64_t* words, std::size_t first, std::size_t second) noexcept
      : words_(words), first_(first), second_(second) {}

  const std::uint64_t* words_ = nullptr;
  std::size_t first_ = 0;   // Inclusive start index.
  std::size_t second_ = 0;  // Exclusive end index; first_ <= second_.
};

}  // namespace vmspace

// AtomicIdSet (built on IdSet above) is part of this header's API.
#include <vmspace/atomic_id_set.hpp>
