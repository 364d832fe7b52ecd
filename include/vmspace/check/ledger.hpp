// The handle ledger: in builds configured with `-Dhandle_ledger=true`, every live Frame handle
// and every segment share of a frame is counted per frame, so the refcount law
// (count = handles + owning page-table entries + segment shares) can be checked exactly.
// Raw references (into_raw, owned by PTEs) are not handles. In other builds the ledger does not
// exist and the law is checked one-sidedly.
#pragma once

#include <cstdint>

#include <vmspace/addr.hpp>

namespace vmspace::check {

// Whether the library was built with the ledger. Code that includes vmspace headers gets the
// matching define through the vmspace dependency, so the two always agree.
bool ledger_enabled() noexcept;

// Live handles and segment shares of the frame at `pa` (0 without the ledger).
std::int64_t ledger_handles(Paddr pa) noexcept;

}  // namespace vmspace::check
