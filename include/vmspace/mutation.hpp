// Forwarding header: the mutation switch moved to <vmspace/internal/mutation.hpp> (internal, not
// API). Kept only while the page-table headers and src/vm/tlb.cpp still include this path;
// remove it once they include the internal header directly.
#pragma once

#include <vmspace/internal/mutation.hpp>
