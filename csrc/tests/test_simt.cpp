// C++ unit tests of the host emulation of the CUDA runtime (csrc/tests/simt), which the other
// C++ tests run the CUDA kernels on: that shuffles, votes, barriers and shared memory behave
// as on a GPU, and that what a GPU refuses or leaves undefined fails the launch instead of
// passing quietly. Exit code 0 when all pass.
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "check.h"

namespace {

using ramo_test::failures;
using simt::Config;

constexpr unsigned kFull = 0xffffffffu;

cudaError_t run(const Config& config, const std::function<void()>& kernel) {
  simt::launch(config, kernel);
  return cudaGetLastError();
}

// Each lane's value summed by an xor butterfly; lane l also reads lane (l + 1) % 32 and
// votes; thread 0 of each block counts, through the block barrier, the threads whose
// value is odd.
void test_warp_and_block_operations() {
  const int blocks = 3, threads = 96;
  std::vector<int> sum(blocks * threads), next(blocks * threads), any(blocks * threads),
      odd_seen(blocks * threads);
  const cudaError_t err = run(Config{blocks, threads}, [&] {
    const int tid = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int value = tid * 3 + 1;
    int s = value;
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(kFull, s, offset);
    sum[tid] = s;
    next[tid] = __shfl_sync(kFull, value, (lane + 1) % 32);
    any[tid] = __any_sync(kFull, lane == 31 && blockIdx.x == 1);
    odd_seen[tid] = __syncthreads_or(tid == 100);
  });
  CHECK(err == cudaSuccess, "launch failed");
  for (int tid = 0; tid < blocks * threads; ++tid) {
    const int warp0 = tid - tid % 32;
    int want = 0;
    for (int l = 0; l < 32; ++l) want += (warp0 + l) * 3 + 1;
    CHECK(sum[tid] == want, "thread %d: butterfly sum %d, want %d", tid, sum[tid], want);
    CHECK(next[tid] == (warp0 + (tid + 1) % 32) * 3 + 1, "thread %d: __shfl_sync", tid);
    CHECK(any[tid] == (tid / threads == 1), "thread %d: __any_sync", tid);
    CHECK(odd_seen[tid] == (tid / threads == 1), "thread %d: __syncthreads_or", tid);
  }
}

// A static shared array is one object for a block's threads and fresh for each block, filled
// with the chosen byte; the dynamic one has the launch's size.
void test_shared_memory() {
  std::vector<int> seen(2 * 64);
  std::vector<unsigned char> first_bytes(2);
  simt::set_shared_fill(0x5a);
  const cudaError_t err = run(Config{2, 64, 16}, [&] {
    auto& slots = simt::static_shared<int[64]>(1);
    unsigned char* dyn = simt::dynamic_shared();
    if (threadIdx.x == 0) first_bytes[blockIdx.x] = dyn[15];
    if (threadIdx.x == 0 && blockIdx.x == 0) slots[5] = 42;  // only block 0 writes it
    slots[threadIdx.x] = slots[threadIdx.x] == 42 ? 42 : static_cast<int>(threadIdx.x);
    __syncthreads();
    seen[blockIdx.x * 64 + threadIdx.x] = slots[(threadIdx.x + 1) % 64];
  });
  simt::set_shared_fill(0xff);
  CHECK(err == cudaSuccess, "launch failed");
  CHECK(first_bytes[0] == 0x5a && first_bytes[1] == 0x5a, "dynamic shared memory not filled");
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 64; ++t) {
      const int want = b == 0 && (t + 1) % 64 == 5 ? 42 : (t + 1) % 64;
      CHECK(seen[b * 64 + t] == want, "block %d thread %d read %d, want %d", b, t,
            seen[b * 64 + t], want);
    }
  }
}

// What a GPU refuses, or leaves undefined, fails the launch; the next launch runs normally.
void test_refused() {
  int ran = 0;
  CHECK(run(Config{1, 2048}, [&] { ++ran; }) == cudaErrorInvalidConfiguration,
        "a block of 2048 threads must be refused");
  CHECK(run(Config{dim3(1, 70000), 32}, [&] { ++ran; }) == cudaErrorInvalidConfiguration,
        "a grid of 70000 rows must be refused");
  CHECK(run(Config{1, 32, 49 * 1024}, [&] { ++ran; }) == cudaErrorInvalidValue,
        "49 KB of dynamic shared memory must be refused");
  CHECK(ran == 0, "a refused launch ran %d threads", ran);
  CHECK(run(Config{1, 32, 40 * 1024}, [&] { simt::static_shared<char[16 * 1024]>(1); }) ==
            cudaErrorLaunchFailure,
        "40 KB dynamic + 16 KB static shared memory must fail");
  // Half a warp at the barrier, the other half in a shuffle: a deadlock on a GPU. (Threads
  // that have exited do not hold a barrier back, as on a GPU.)
  CHECK(run(Config{1, 64}, [&] {
          volatile int local[64] = {};  // frames abandoned by the failure
          local[threadIdx.x] = 1;
          if (threadIdx.x < 16 && local[threadIdx.x] == 1) {
            __syncthreads();
          } else if (threadIdx.x < 32) {
            __shfl_sync(kFull, 1, 0);
          } else {
            __syncthreads();
          }
        }) == cudaErrorLaunchFailure,
        "a barrier and a shuffle waiting on each other must fail");
  CHECK(run(Config{1, 64}, [&] {
          if (threadIdx.x != 0) __syncthreads();
        }) == cudaSuccess,
        "a barrier after thread 0 exited must open");
  // Lanes in different warp operations.
  CHECK(run(Config{1, 32}, [&] {
          if (threadIdx.x < 16) {
            __shfl_sync(kFull, 1, 0);
          } else {
            __any_sync(kFull, 1);
          }
        }) == cudaErrorLaunchFailure,
        "lanes in different warp operations must fail");
  // A full-mask shuffle after lane 3 has exited.
  CHECK(run(Config{1, 32}, [&] {
          if (threadIdx.x == 3) return;
          __shfl_xor_sync(kFull, 1, 1);
        }) == cudaErrorLaunchFailure,
        "a full-mask shuffle after a lane exited must fail");
  CHECK(run(Config{1, 32}, [&] { __shfl_sync(0u, 1, 0, 16); }) == cudaErrorLaunchFailure,
        "a shuffle narrower than a warp must fail");
  CHECK(run(Config{1, 32}, [&] { simt::launch(Config{1, 1}, [] {}); }) ==
            cudaErrorLaunchFailure,
        "a launch from inside a kernel must fail");
  // After all that, a launch with locals on every fiber's stack runs cleanly.
  std::vector<int> out(128);
  CHECK(run(Config{2, 64}, [&] {
          int local[64];
          for (int i = 0; i < 64; ++i) local[i] = i * static_cast<int>(threadIdx.x);
          __syncthreads();
          out[blockIdx.x * 64 + threadIdx.x] = local[63];
        }) == cudaSuccess,
        "a launch after failed ones must run");
  for (int i = 0; i < 128; ++i) CHECK(out[i] == 63 * (i % 64), "thread %d wrote %d", i, out[i]);
}

}  // namespace

int main() {
  test_warp_and_block_operations();
  test_shared_memory();
  test_refused();
  std::printf("%s (%d failures)\n", failures == 0 ? "PASS" : "FAIL", failures);
  return failures == 0 ? 0 : 1;
}
