// Forwarding header: the mutation switch moved to <vmspace/internal/mutation.hpp> (internal, not
// API). Kept only because page_table.hpp still includes this path; remove it once it includes
// the internal header directly.
#pragma once

#include <vmspace/internal/mutation.hpp>
