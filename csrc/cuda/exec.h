// The block-program executor: how one CUDA kernel source runs on the GPU and on the CPU.
//
// Every CUDA kernel in convlab is written once, as a *block program*: a struct whose
// `operator()(Exec& ex)` is what one thread block does. It speaks to its executor only
// through these calls:
//
//   ex.each([&](int t) { ... })   every thread t of the block runs the body (the code
//                                 between two barriers);
//   ex.sync()                     a barrier (__syncthreads);
//   ex.shared<T>()                the block's dynamic shared memory;
//   ex.per_thread<T>()            one T per thread (registers on the GPU): slots[t];
//   ex.block_sum<T>(get)          the sum over the block of get(t), every thread getting
//                                 the same bits (warp butterfly, then across warps);
//   ex.block_x(), grid_x(), ...   where the block is and how large the grid is;
//   ex.threads()                  threads per block (a multiple of 32).
//
// On the GPU (DeviceExec, nvcc only) each(f) is f(threadIdx.x), sync() is
// __syncthreads() and a per-thread slot is one local variable. On the CPU (HostExec)
// each(f) runs f for t = 0, 1, ... threads-1 in turn, so every barrier is honoured by
// construction; shared memory is a host buffer and per-thread state a vector. HostRunner
// runs the blocks of a grid (in parallel over OpenMP threads: blocks are independent,
// as on the GPU). Shared memory and per-thread state start filled with 0xFF bytes (NaN
// in float and double), so a program that reads what it never wrote fails its tests.
//
// What the host run proves: index math, halos, edge masks, tiling, the phase structure
// and the order of reductions. What it cannot: races between threads inside one phase
// (the host runs them in turn), real speed, and register and shared-memory limits (the
// build's resource report checks those).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../common/geometry.h"

namespace convlab::cuda {

// Which version of a kernel runs: the fast default, or the one-thread-per-output
// reference that is written to be obviously right.
enum class Variant { Fast, Reference };

inline Variant parse_variant(const std::string& name) {
  if (name == "fast") return Variant::Fast;
  if (name == "reference") return Variant::Reference;
  throw std::invalid_argument("variant must be 'fast' or 'reference', got '" + name + "'");
}

// How one kernel is launched: a grid of blocks of `threads` threads (1-D blocks) with
// `shared_bytes` of dynamic shared memory each.
struct LaunchPlan {
  index_t grid_x = 1, grid_y = 1, grid_z = 1;
  int threads = 256;
  std::size_t shared_bytes = 0;
};

// Launch limits of every GPU convlab builds for (sm_70 and newer).
constexpr index_t kMaxGridX = (index_t(1) << 31) - 1;
constexpr index_t kMaxGridYZ = 65535;
constexpr int kMaxThreadsPerBlock = 1024;
// Dynamic shared memory a block may use without the opt-in attribute.
constexpr std::size_t kMaxSharedBytes = 48 * 1024;
// Grid-stride loops cap their grid here: 16 blocks of 256 threads on each of 132 SMs
// (an H100/H200) is about 2,100 blocks, so 8,192 keeps every SM busy on larger chips
// while a loop over 2^40 elements still needs no grid past the limits.
constexpr index_t kGridStrideMaxBlocks = 8192;

CONVLAB_HD index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// A 1-D grid for a grid-stride loop over `count` items.
inline LaunchPlan plan_grid_stride(index_t count, int threads = 256) {
  LaunchPlan plan;
  plan.threads = threads;
  const index_t blocks = ceil_div(count, threads);
  plan.grid_x = blocks < 1 ? 1 : (blocks > kGridStrideMaxBlocks ? kGridStrideMaxBlocks : blocks);
  return plan;
}

// Refuses a plan no GPU could launch; the same check runs before a host run, so a
// planner bug shows up in the CPU tests with the kernel's name.
inline void check_plan(const char* kernel, const LaunchPlan& plan) {
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(std::string(kernel) + ": invalid launch plan: " + what);
  };
  if (plan.grid_x < 1 || plan.grid_x > kMaxGridX)
    fail("grid x " + std::to_string(plan.grid_x) + " outside [1, 2^31 - 1]");
  if (plan.grid_y < 1 || plan.grid_y > kMaxGridYZ || plan.grid_z < 1 || plan.grid_z > kMaxGridYZ)
    fail("grid y/z (" + std::to_string(plan.grid_y) + ", " + std::to_string(plan.grid_z) +
         ") outside [1, 65535]");
  if (plan.threads < 32 || plan.threads > kMaxThreadsPerBlock || plan.threads % 32 != 0)
    fail("block of " + std::to_string(plan.threads) + " threads (a multiple of 32 up to 1024)");
  if (plan.shared_bytes > kMaxSharedBytes)
    fail(std::to_string(plan.shared_bytes) + " bytes of shared memory (at most 48 KiB)");
}

// Butterfly sum of 32 lanes: after step `offset`, lane l holds v[l] + v[l ^ offset].
// a + b and b + a are the same bits, so every lane ends with the same value. The GPU
// does this with __shfl_xor_sync; the host twin below does it on an array.
template <class T>
void host_warp_sum(T* lanes) {
  for (int offset = 16; offset >= 1; offset /= 2) {
    T next[32];
    for (int l = 0; l < 32; ++l) next[l] = lanes[l] + lanes[l ^ offset];
    for (int l = 0; l < 32; ++l) lanes[l] = next[l];
  }
}

// ---------------------------------------------------------------------------- host
// (built by the host compiler only: nvcc's translation units launch on the GPU)
#ifndef __CUDACC__

class HostExec {
 public:
  template <class T>
  struct Slots {
    std::vector<T> values;
    T& operator[](int t) { return values[static_cast<std::size_t>(t)]; }
  };

  HostExec(const LaunchPlan& plan, unsigned char* shared) : plan_(plan), shared_(shared) {}

  void set_block(index_t x, index_t y, index_t z) {
    block_x_ = x;
    block_y_ = y;
    block_z_ = z;
    if (plan_.shared_bytes) std::memset(shared_, 0xFF, plan_.shared_bytes);
  }

  template <class F>
  void each(F&& f) {
    for (int t = 0; t < plan_.threads; ++t) f(t);
  }
  void sync() {}

  template <class T>
  T* shared() { return reinterpret_cast<T*>(shared_); }

  template <class T>
  Slots<T> per_thread() {
    Slots<T> slots;
    slots.values.resize(static_cast<std::size_t>(plan_.threads));
    std::memset(static_cast<void*>(slots.values.data()), 0xFF, sizeof(T) * slots.values.size());
    return slots;
  }

  // The device's order exactly: a butterfly in each warp, then one over the warp sums.
  template <class T, class Get>
  T block_sum(Get&& get) {
    const int warps = plan_.threads / 32;
    T warp_sums[32];
    for (int w = 0; w < 32; ++w) warp_sums[w] = T(0);
    for (int w = 0; w < warps; ++w) {
      T lanes[32];
      for (int l = 0; l < 32; ++l) lanes[l] = get(w * 32 + l);
      host_warp_sum(lanes);
      warp_sums[w] = lanes[0];
    }
    host_warp_sum(warp_sums);
    return warp_sums[0];
  }

  index_t block_x() const { return block_x_; }
  index_t block_y() const { return block_y_; }
  index_t block_z() const { return block_z_; }
  index_t grid_x() const { return plan_.grid_x; }
  index_t grid_y() const { return plan_.grid_y; }
  index_t grid_z() const { return plan_.grid_z; }
  int threads() const { return plan_.threads; }

 private:
  LaunchPlan plan_;
  unsigned char* shared_;
  index_t block_x_ = 0, block_y_ = 0, block_z_ = 0;
};

// Host threads (blocks x threads per block) below which a grid runs on one CPU thread.
constexpr index_t kHostParallelThreads = index_t(1) << 14;

// Runs block programs on the CPU: the same plans, the same programs, every block.
class HostRunner {
 public:
  // Workspace lives until the runner is destroyed (after the kernel call returns).
  void* workspace(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    buffers_.emplace_back(new unsigned char[bytes]);
    std::memset(buffers_.back().get(), 0xFF, bytes);
    return buffers_.back().get();
  }

  template <class Program>
  void operator()(const char* kernel, const LaunchPlan& plan, const Program& program) {
    check_plan(kernel, plan);
    if (plan.threads > Program::kMaxThreads)
      throw std::runtime_error(std::string(kernel) + ": invalid launch plan: " +
                               std::to_string(plan.threads) + " threads, above the kernel's bound " +
                               std::to_string(Program::kMaxThreads));
    const index_t blocks = plan.grid_x * plan.grid_y * plan.grid_z;
    // Small grids stay on the calling thread: starting an OpenMP team costs more than
    // the work (the tests launch thousands of tiny grids).
#pragma omp parallel if (blocks > 1 && blocks * plan.threads >= kHostParallelThreads)
    {
      // 16 bytes of slack: the GPU aligns dynamic shared memory to at least 16 bytes.
      std::vector<unsigned char> shared(plan.shared_bytes + 16);
      auto* base = reinterpret_cast<unsigned char*>(
          (reinterpret_cast<std::uintptr_t>(shared.data()) + 15) & ~std::uintptr_t(15));
      HostExec ex(plan, base);
#pragma omp for schedule(static)
      for (index_t b = 0; b < blocks; ++b) {
        ex.set_block(b % plan.grid_x, (b / plan.grid_x) % plan.grid_y,
                     b / (plan.grid_x * plan.grid_y));
        program(ex);
      }
    }
  }

 private:
  std::vector<std::unique_ptr<unsigned char[]>> buffers_;
};

// Records what a launcher would launch instead of running it: the planners' output,
// for tests (shapes far past 2^31 elements need no memory, since nothing runs).
struct RecordedLaunch {
  std::string kernel;
  LaunchPlan plan;
  int max_threads = 0;  // the program's kMaxThreads
};

class PlanRecorder {
 public:
  explicit PlanRecorder(std::vector<RecordedLaunch>* launches, std::size_t* workspace_bytes)
      : launches_(launches), workspace_bytes_(workspace_bytes) {}

  // Never dereferenced: nothing runs.
  void* workspace(std::size_t bytes) {
    *workspace_bytes_ += bytes;
    return bytes ? reinterpret_cast<void*>(std::uintptr_t(256)) : nullptr;
  }

  template <class Program>
  void operator()(const char* kernel, const LaunchPlan& plan, const Program&) {
    check_plan(kernel, plan);
    launches_->push_back({kernel, plan, Program::kMaxThreads});
  }

 private:
  std::vector<RecordedLaunch>* launches_;
  std::size_t* workspace_bytes_;
};

#endif  // !__CUDACC__

// ---------------------------------------------------------------------------- device

#ifdef __CUDACC__
struct DeviceExec {
  template <class T>
  struct Slots {
    T value;
    __device__ __forceinline__ T& operator[](int) { return value; }
  };

  template <class F>
  __device__ __forceinline__ void each(F&& f) { f(static_cast<int>(threadIdx.x)); }
  __device__ __forceinline__ void sync() { __syncthreads(); }

  template <class T>
  __device__ __forceinline__ T* shared() {
    extern __shared__ __align__(16) unsigned char convlab_dynamic_shared[];
    return reinterpret_cast<T*>(convlab_dynamic_shared);
  }

  template <class T>
  __device__ __forceinline__ Slots<T> per_thread() { return Slots<T>{}; }

  template <class T>
  static __device__ __forceinline__ T warp_sum(T v) {
    for (int offset = 16; offset >= 1; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
  }

  // Every warp reduces the warp sums itself, so all threads get the total with no
  // broadcast step; the second barrier lets the next call reuse the scratch.
  template <class T, class Get>
  __device__ __forceinline__ T block_sum(Get&& get) {
    __shared__ T scratch[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const T v = warp_sum(get(static_cast<int>(threadIdx.x)));
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const T total = warp_sum(lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : T(0));
    __syncthreads();
    return total;
  }

  __device__ __forceinline__ index_t block_x() const { return blockIdx.x; }
  __device__ __forceinline__ index_t block_y() const { return blockIdx.y; }
  __device__ __forceinline__ index_t block_z() const { return blockIdx.z; }
  __device__ __forceinline__ index_t grid_x() const { return gridDim.x; }
  __device__ __forceinline__ index_t grid_y() const { return gridDim.y; }
  __device__ __forceinline__ index_t grid_z() const { return gridDim.z; }
  __device__ __forceinline__ int threads() const { return blockDim.x; }
};
#endif

}  // namespace convlab::cuda
