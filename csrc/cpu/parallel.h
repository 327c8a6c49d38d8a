// When a CPU kernel opens an OpenMP parallel region.
//
// Starting a team and meeting at its barrier costs microseconds when the cores are idle,
// but milliseconds when they are shared: a thread that spins at the barrier waits for a
// sibling the OS has not scheduled yet (another process, or another OpenMP runtime in
// the same process, such as PyTorch's, whose threads spin too). Tiny calls — the shapes
// gradient checks and unit tests use — therefore run on the calling thread alone.
#pragma once

#include "../common/geometry.h"

namespace convlab::cpu {

// Elements touched (or multiply-adds done) below which a kernel stays on one thread:
// about 20-50 microseconds of work.
constexpr index_t kMinParallelWork = index_t(1) << 15;

inline bool worth_parallel(index_t work) { return work >= kMinParallelWork; }

}  // namespace convlab::cpu
