// Printing page properties, their flags and PTE values (for messages and test failures).
#include <vmspace/page_prop.hpp>
#include <vmspace/pte.hpp>

#include <ostream>

namespace vmspace {

namespace {

template <class E>
void print_flags(std::ostream& os, E flags,
                 std::initializer_list<std::pair<E, const char*>> names) {
  bool first = true;
  for (auto [bit, name] : names) {
    if (has(flags, bit)) {
      os << (first ? "" : "|") << name;
      first = false;
    }
  }
  if (first) os << "-";
}

}  // namespace

std::ostream& operator<<(std::ostream& os, PageFlags f) {
  print_flags(os, f,
              {{PageFlags::R, "R"},
               {PageFlags::W, "W"},
               {PageFlags::X, "X"},
               {PageFlags::ACCESSED, "A"},
               {PageFlags::DIRTY, "D"},
               {PageFlags::AVAIL2, "AVAIL2"}});
  return os;
}

std::ostream& operator<<(std::ostream& os, PrivilegedPageFlags f) {
  print_flags(os, f,
              {{PrivilegedPageFlags::USER, "USER"},
               {PrivilegedPageFlags::GLOBAL, "GLOBAL"},
               {PrivilegedPageFlags::AVAIL1, "AVAIL1"},
               {PrivilegedPageFlags::SHARED, "SHARED"}});
  return os;
}

std::ostream& operator<<(std::ostream& os, CachePolicy c) {
  switch (c) {
    case CachePolicy::Uncacheable:
      return os << "UC";
    case CachePolicy::WriteCombining:
      return os << "WC";
    case CachePolicy::WriteProtected:
      return os << "WP";
    case CachePolicy::Writethrough:
      return os << "WT";
    case CachePolicy::Writeback:
      return os << "WB";
  }
  return os << "?";
}

std::ostream& operator<<(std::ostream& os, const PageProperty& p) {
  return os << "{" << p.flags << " " << p.cache << " " << p.priv_flags << "}";
}

std::ostream& operator<<(std::ostream& os, const PteScalar& s) {
  auto flags = os.flags();
  switch (s.kind) {
    case PteScalar::Kind::Absent:
      os << "Absent";
      break;
    case PteScalar::Kind::PageTable:
      os << "PageTable(0x" << std::hex << s.paddr << std::dec << ", "
         << static_cast<unsigned>(s.pt_flags) << ")";
      break;
    case PteScalar::Kind::Mapped:
      os << "Mapped(0x" << std::hex << s.paddr << std::dec << ", " << s.prop << ")";
      break;
  }
  os.flags(flags);
  return os;
}

}  // namespace vmspace
