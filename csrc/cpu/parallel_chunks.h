// Dynamic scheduling for the CPU kernels' parallel loops.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace ramo {
namespace cpu {

// Runs body(c) for every c in [0, chunks) on at::parallel_for's threads. Each thread takes
// the next chunk from a shared counter rather than an even share upfront: on a shared
// machine one core often runs slower than the others, and an even split waits for it. Which
// thread runs a chunk must not change the result (each chunk writes only its own outputs).
template <typename Body>
void parallel_chunks(int64_t chunks, const Body& body) {
  std::atomic<int64_t> next{0};
  const int64_t threads = std::min<int64_t>(chunks, at::get_num_threads());
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t c = next++; c < chunks; c = next++) body(c);
  });
}

}  // namespace cpu
}  // namespace ramo
