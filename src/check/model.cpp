// The abstract page-table model and its cursor (check/model.hpp): the mapping set's
// operations as the specifications define them, and the library's argument checks.
#include <vmspace/check/model.hpp>

#include <algorithm>
#include <sstream>

namespace vmspace::check {

namespace {

std::size_t index_at(Vaddr va, PagingLevel level) noexcept {
  return static_cast<std::size_t>((va >> (12u + 9u * (level - 1u))) & 511u);
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const Mapping& m) {
  auto flags = os.flags();
  os << "[0x" << std::hex << m.va << ", +0x" << m.size() << ") -> 0x" << m.pa << std::dec << " L"
     << static_cast<unsigned>(m.level) << " " << m.prop;
  os.flags(flags);
  return os;
}

PageProperty without_access_bits(PageProperty p) noexcept {
  p.flags &= ~(PageFlags::ACCESSED | PageFlags::DIRTY);
  return p;
}

std::optional<Mapping> AbstractModel::find(Vaddr va) const {
  auto it = mappings_.upper_bound(va);
  if (it == mappings_.begin()) return std::nullopt;
  --it;
  if (it->second.contains(va)) return it->second;
  return std::nullopt;
}

std::optional<Mapping> AbstractModel::first_touching(Vaddr va, Vaddr last) const {
  if (auto m = find(va)) return m;
  auto it = mappings_.upper_bound(va);
  if (it != mappings_.end() && it->first <= last) return it->second;
  return std::nullopt;
}

bool AbstractModel::overlaps(Vaddr start, Vaddr last) const {
  return first_touching(start, last).has_value();
}

bool AbstractModel::map(const Mapping& m) {
  if (overlaps(m.va, m.last())) return false;
  mappings_.emplace(m.va, m);
  return true;
}

void AbstractModel::split(Vaddr va) {
  auto it = mappings_.upper_bound(va);
  --it;
  const Mapping m = it->second;
  mappings_.erase(it);
  const std::uint64_t child = model_page_size(static_cast<PagingLevel>(m.level - 1));
  for (std::uint64_t i = 0; i < 512; ++i) {
    Mapping piece{m.va + i * child, static_cast<PagingLevel>(m.level - 1), m.pa + i * child,
                  m.prop};
    mappings_.emplace(piece.va, piece);
  }
}

std::vector<Mapping> AbstractModel::unmap(Vaddr start, Vaddr last) {
  std::vector<Mapping> removed;
  Vaddr p = start;
  for (;;) {
    auto m = first_touching(p, last);
    if (!m) break;
    const Vaddr q = std::max(m->va, p);
    if (m->va == q && m->last() <= last) {
      removed.push_back(*m);
      mappings_.erase(m->va);
      if (m->last() >= last) break;
      p = m->last() + 1;
    } else {
      split(q);
    }
  }
  return removed;
}

Result<std::optional<Mapping>, PageTableError> AbstractModel::protect_next(
    Vaddr start, Vaddr last, const std::function<void(PageProperty&)>& op) {
  auto m = first_touching(start, last);
  if (!m) return std::optional<Mapping>();
  const Vaddr q = std::max(m->va, start);
  PageProperty prop = m->prop;
  op(prop);
  prop.priv_flags = (prop.priv_flags & ~PrivilegedPageFlags::AVAIL1) |
                    (m->prop.priv_flags & PrivilegedPageFlags::AVAIL1);
  if (config_.can_encode && !config_.can_encode(prop)) return err(PageTableError::InvalidItem);
  while (!(m->va == q && m->last() <= last)) {
    split(q);
    m = find(q);
  }
  mappings_[m->va].prop = prop;
  m->prop = prop;
  return m;
}

PagingLevel AbstractModel::guard_level(VaRange range) const {
  for (PagingLevel level = config_.nr_levels; level >= 1; --level) {
    if (level == 1 || index_at(range.start, level) != index_at(range.end - 1, level)) return level;
    const std::uint64_t size = model_page_size(level);
    if (is_aligned(range.start, size) && range.end - range.start == size) return level;
    if (auto m = find(range.start); m && m->level == level) return level;
  }
  return 1;
}

std::vector<std::string> AbstractModel::diff(const std::vector<Mapping>& actual) const {
  std::vector<std::string> out;
  std::map<Vaddr, Mapping> got;
  for (const Mapping& m : actual) {
    if (!got.emplace(m.va, m).second) {
      std::ostringstream os;
      os << "duplicate actual mapping at " << m;
      out.push_back(os.str());
    }
  }
  for (const auto& [va, want] : mappings_) {
    auto it = got.find(va);
    std::ostringstream os;
    if (it == got.end()) {
      os << "missing " << want;
      out.push_back(os.str());
      continue;
    }
    const Mapping& have = it->second;
    if (have.level != want.level || have.pa != want.pa ||
        without_access_bits(have.prop) != without_access_bits(want.prop)) {
      os << "expected " << want << ", found " << have;
      out.push_back(os.str());
    }
    got.erase(it);
  }
  for (const auto& [va, extra] : got) {
    std::ostringstream os;
    os << "unexpected " << extra;
    out.push_back(os.str());
  }
  return out;
}

// ---- ModelCursor ----

ModelCursor::ModelCursor(AbstractModel& model, VaRange range)
    : model_(&model), barrier_(range), guard_level_(model.guard_level(range)), va_(range.start) {}

std::optional<PageTableError> ModelCursor::check_len(std::uint64_t len) const noexcept {
  if (!is_aligned(len, kPageSize)) return PageTableError::UnalignedLen;
  if (va_ > barrier_.end || len > barrier_.end - va_) return PageTableError::LenOutOfRange;
  return std::nullopt;
}

Result<std::optional<Mapping>, PageTableError> ModelCursor::query() const {
  if (va_ >= barrier_.end) return err(PageTableError::InvalidVaddr);
  return model_->find(va_);
}

Result<std::optional<Vaddr>, PageTableError> ModelCursor::find_next(std::uint64_t len) {
  if (auto e = check_len(len)) return err(*e);
  if (len == 0) return std::optional<Vaddr>();
  if (auto m = model_->first_touching(va_, va_ + (len - 1))) {
    va_ = std::max(m->va, va_);
    return std::optional<Vaddr>(va_);
  }
  va_ += len;
  return std::optional<Vaddr>();
}

Result<void, PageTableError> ModelCursor::jump(Vaddr va) {
  if (!is_aligned(va, kPageSize)) return err(PageTableError::UnalignedLen);
  if (!barrier_.contains(va)) return err(PageTableError::InvalidVaddr);
  va_ = va;
  return {};
}

Result<void, PageTableError> ModelCursor::map(Paddr pa, PagingLevel level, PageProperty raw_prop) {
  const ModelConfig& c = model_->config();
  if (va_ >= barrier_.end) return err(PageTableError::InvalidVaddr);
  if (level < 1 || level > c.highest_level || level > guard_level_ ||
      (!c.top_level_can_unmap && level == c.nr_levels)) {
    return err(PageTableError::InvalidItem);
  }
  const std::uint64_t size = model_page_size(level);
  if (!is_aligned(va_, size) || !is_aligned(pa, size) || size > barrier_.end - va_ ||
      (c.can_encode && !c.can_encode(raw_prop)) || pa > c.paddr_limit - size) {
    return err(PageTableError::InvalidItem);
  }
  if (!model_->map(Mapping{va_, level, pa, raw_prop})) return err(PageTableError::AlreadyMapped);
  va_ += size;
  return {};
}

Result<std::vector<Mapping>, PageTableError> ModelCursor::unmap(std::uint64_t len) {
  if (auto e = check_len(len)) return err(*e);
  if (len == 0) return std::vector<Mapping>();
  auto removed = model_->unmap(va_, va_ + (len - 1));
  va_ += len;
  return removed;
}

Result<std::optional<VaRange>, PageTableError> ModelCursor::protect_next(
    std::uint64_t len, const std::function<void(PageProperty&)>& op) {
  if (auto e = check_len(len)) return err(*e);
  if (len == 0) return std::optional<VaRange>();
  auto r = model_->protect_next(va_, va_ + (len - 1), op);
  if (!r) return err(r.error());
  if (!*r) {
    va_ += len;
    return std::optional<VaRange>();
  }
  const Mapping& m = **r;
  va_ = m.va + m.size();
  return std::optional<VaRange>(VaRange{m.va, m.va + m.size()});
}

Result<std::size_t, PageTableError> ModelCursor::protect(
    std::uint64_t len, const std::function<void(PageProperty&)>& op) {
  if (auto e = check_len(len)) return err(*e);
  std::size_t changed = 0;
  std::uint64_t left = len;  // the window is [va_, va_ + left); never computes its end (2^64)
  while (left > 0) {
    const Vaddr start = va_;
    const std::optional<Mapping> next = model_->first_touching(start, start + (left - 1));
    auto r = protect_next(left, op);
    if (!r) {
      if (next) va_ = std::max(next->va, start);
      return err(r.error());
    }
    if (!*r) break;  // protect_next moved to the window's end
    ++changed;
    left -= va_ - start;
  }
  return changed;
}

std::optional<PageTableError> model_check_cursor_range(const ModelConfig& config,
                                                       VaRange range) noexcept {
  if (!(range.start < range.end) || range.start < config.first || range.end - 1 > config.last) {
    return PageTableError::InvalidVaddrRange;
  }
  if (!is_aligned(range.start, kPageSize) || !is_aligned(range.end, kPageSize)) {
    return PageTableError::UnalignedVaddr;
  }
  return std::nullopt;
}

}  // namespace vmspace::check
