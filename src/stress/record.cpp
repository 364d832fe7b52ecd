// Readable descriptions of records, copies, properties and errors for violation reports.
#include "record.hpp"

#include <sstream>

namespace vmspace::stress::internal {

const char* to_string(RecKind k) noexcept {
  switch (k) {
    case RecKind::Open:
      return "open";
    case RecKind::Close:
      return "close";
    case RecKind::Query:
      return "query";
    case RecKind::FindNext:
      return "find_next";
    case RecKind::Jump:
      return "jump";
    case RecKind::Map:
      return "map";
    case RecKind::Unmap:
      return "unmap";
    case RecKind::Protect:
      return "protect_next";
  }
  return "?";
}

std::string hex(std::uint64_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

std::string describe(const PageProperty& p) {
  std::ostringstream os;
  os << p;
  return os.str();
}

std::string describe(const ProtectChange& c) {
  std::ostringstream os;
  os << "{set " << c.set << ", clear " << c.clear;
  if (c.cache) os << ", cache " << *c.cache;
  os << "}";
  return os.str();
}

namespace {

// (Streams rather than operator+: GCC 12 at -O3 reports a false -Wrestrict on
// "literal" + std::string chains, GCC bug 105329.)
std::string range_str(VaRange r) {
  std::ostringstream os;
  os << "[0x" << std::hex << r.start << ", 0x" << r.end << ")";
  return os.str();
}

std::string error_str(const Record& r) {
  std::ostringstream os;
  os << vmspace::to_string(r.error) << "/" << vmspace::to_string(r.pt_error);
  return os.str();
}

}  // namespace

std::string describe(const Record& r) {
  std::ostringstream os;
  os << "#" << r.ticket << " t" << unsigned(r.thread) << " s" << r.space << " cursor " << r.cursor
     << " " << range_str(r.range) << " ";
  switch (r.kind) {
    case RecKind::Open:
      os << (r.mut ? "open cursor_mut" : "open cursor") << (r.try_lock ? " (try)" : "")
         << (r.nested ? " (nested)" : "") << " -> " << (r.ok ? "Ok" : error_str(r));
      return os.str();
    case RecKind::Close:
      os << "close";
      return os.str();
    case RecKind::Query:
      os << "query @" << hex(r.before);
      break;
    case RecKind::FindNext:
      os << "find_next(" << hex(r.len) << ") @" << hex(r.before);
      break;
    case RecKind::Jump:
      os << "jump(" << hex(r.target) << ") @" << hex(r.before);
      break;
    case RecKind::Map:
      os << (r.level == 1 ? "map frame " : "map 2 MiB segment ") << hex(r.pa) << " "
         << describe(r.prop) << " @" << hex(r.before);
      break;
    case RecKind::Unmap:
      os << "unmap(" << hex(r.len) << ") @" << hex(r.before);
      break;
    case RecKind::Protect:
      os << "protect_next(" << hex(r.len) << ", " << describe(r.change) << ") @" << hex(r.before);
      break;
  }
  os << " -> ";
  if (!r.ok) {
    os << error_str(r);
  } else {
    switch (r.kind) {
      case RecKind::Query:
        os << range_str(r.out_range) << " ";
        if (r.has_value) {
          os << hex(r.out_pa) << " L" << unsigned(r.out_level) << " " << describe(r.out_prop);
        } else {
          os << "nothing mapped";
        }
        break;
      case RecKind::FindNext:
        os << (r.has_value ? hex(r.out_va) : std::string("none"));
        break;
      case RecKind::Unmap:
        os << r.count << " frames";
        break;
      case RecKind::Protect:
        os << (r.has_value ? range_str(r.out_range) : std::string("none"));
        break;
      default:
        os << "Ok";
        break;
    }
  }
  os << ", cursor at " << hex(r.after);
  return os.str();
}

std::string describe(const CopyRecord& c) {
  std::ostringstream os;
  os << "#" << c.start << "..#" << c.end << " t" << unsigned(c.thread) << " s" << c.space << " "
     << (c.write ? "write" : "read") << " [" << hex(c.va) << ", " << hex(c.va + c.len) << ")";
  if (c.write) os << " (write #" << c.seq << ")";
  os << " -> " << (c.faulted ? "PageFault after " : "copied ") << hex(c.copied) << " bytes";
  return os.str();
}

}  // namespace vmspace::stress::internal
