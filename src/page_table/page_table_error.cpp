// Names of PageTableError values (declared in page_table_config.hpp), for logs and test output.
#include <vmspace/page_table_config.hpp>

#include <ostream>

namespace vmspace {

const char* to_string(PageTableError e) noexcept {
  switch (e) {
    case PageTableError::InvalidVaddrRange:
      return "InvalidVaddrRange";
    case PageTableError::UnalignedVaddr:
      return "UnalignedVaddr";
    case PageTableError::InvalidVaddr:
      return "InvalidVaddr";
    case PageTableError::UnalignedLen:
      return "UnalignedLen";
    case PageTableError::LenOutOfRange:
      return "LenOutOfRange";
    case PageTableError::AlreadyMapped:
      return "AlreadyMapped";
    case PageTableError::InvalidItem:
      return "InvalidItem";
    case PageTableError::NoMemory:
      return "NoMemory";
    case PageTableError::WouldBlock:
      return "WouldBlock";
    case PageTableError::WouldDeadlock:
      return "WouldDeadlock";
    case PageTableError::TooManyTables:
      return "TooManyTables";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, PageTableError e) { return os << to_string(e); }

}  // namespace vmspace
