// The CUDA runtime as the kernels in kernels/cuda see it, emulated on the host, so that the
// C++ unit tests run those kernels and their launchers on a CPU (docs/architecture.md,
// "The CUDA kernels on the host"). The build rewrites each .cu's launches and its shared
// arrays (host_cu.cmake); this header gives the rest: the keywords, dim3, the built-in
// indices, the barriers, warp shuffles and votes, atomics and the few runtime calls the
// launchers make. simt.cpp runs a launch's blocks one after another, each block's threads
// as fibers on the calling thread that switch only at a barrier or a warp operation.
//
// Checked on every launch, as a GPU would refuse them: the grid and block limits and 48 KB
// of shared memory (static and dynamic). Reported as a failed launch (cudaGetLastError, with
// a message on stderr): a barrier or warp operation that not every thread reaches (a
// deadlock on a GPU), lanes of one warp in different warp operations, a warp operation whose
// mask is not the warp's live lanes (one that has exited included), a shuffle narrower than a
// warp. Not checked: __launch_bounds__ (dropped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Grids of at most 3 blocks, so that the kernels' grid-stride loops run on small inputs
// (kernels/cuda/grid.h).
#define RAMO_GRID_CAP(limit) ((limit) < 3 ? (limit) : 3)

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
using cudaStream_t = struct CUstream_st*;
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };

cudaError_t cudaGetLastError();
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);

namespace simt {

constexpr int kWarpSize = 32;
constexpr size_t kMaxDynamicShared = 48 * 1024;

// A launch's configuration, as between <<< and >>>.
struct Config {
  dim3 grid;
  dim3 block;
  size_t shared = 0;
  cudaStream_t stream = nullptr;
};

// Runs kernel (the rewritten launch's call) for every thread of every block of config.
void launch(const Config& config, const std::function<void()>& kernel);

// The order in which a block's threads run between two barriers: a kernel whose threads
// read what others write without a barrier between gives different results in the two.
enum class Order { kForward, kReverse };
void set_order(Order order);
// The byte that fills shared memory before each block (0xff unless set: NaN in every float
// type); a kernel that reads what it has not written depends on it. Flags read before a
// barrier makes them final show up with one fill or the other.
void set_shared_fill(unsigned char fill);

const dim3& thread_index();
const dim3& block_index();
const dim3& block_dim();
const dim3& grid_dim();
unsigned char* dynamic_shared();
// The block's array of type T (T[n] or T[n][m]) declared `__shared__` at the rewritten
// declaration `site`: the same object for every thread of a block, fresh for each block.
void* static_shared(int site, size_t bytes);
template <typename T>
T& static_shared(int site) {
  static_assert(alignof(T) <= 16, "shared arrays are 16-byte aligned");
  return *static_cast<T*>(static_shared(site, sizeof(T)));
}

void syncthreads();
bool syncthreads_or(bool predicate);
uint64_t shuffle(unsigned mask, uint64_t bits, int lane, int width, bool xor_lane);
bool any(unsigned mask, bool predicate);

template <typename T>
T shuffle_value(unsigned mask, T value, int lane, int width, bool xor_lane) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "a register value");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof value);
  bits = shuffle(mask, bits, lane, width, xor_lane);
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

}  // namespace simt

#define threadIdx (::simt::thread_index())
#define blockIdx (::simt::block_index())
#define blockDim (::simt::block_dim())
#define gridDim (::simt::grid_dim())
#define warpSize (::simt::kWarpSize)

inline void __syncthreads() { simt::syncthreads(); }
inline int __syncthreads_or(int predicate) { return simt::syncthreads_or(predicate != 0); }
inline int __any_sync(unsigned mask, int predicate) { return simt::any(mask, predicate != 0); }

template <typename T>
T __shfl_sync(unsigned mask, T value, int lane, int width = simt::kWarpSize) {
  return simt::shuffle_value(mask, value, lane, width, false);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = simt::kWarpSize) {
  return simt::shuffle_value(mask, value, lane_mask, width, true);
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}

// Threads switch only at barriers and warp operations, so a read-modify-write is atomic.
template <typename T>
T atomicAdd(T* p, T value) {
  const T old = *p;
  *p = old + value;
  return old;
}
template <typename T>
T atomicMin(T* p, T value) {
  const T old = *p;
  if (value < old) *p = value;
  return old;
}
