// The launch behind DeviceRunner (device_runner.h): one __global__ template that builds
// a DeviceExec and runs the block program. Included by the .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "device_runner.h"

namespace convlab::cuda {

// Program::kMaxThreads bounds the block size, so the compiler can budget registers.
template <class Program>
__global__ void __launch_bounds__(Program::kMaxThreads) run_block_program(const Program program) {
  DeviceExec ex;
  program(ex);
}

inline void check_cuda(const char* kernel, cudaError_t status) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(kernel) + ": CUDA error " + cudaGetErrorName(status) +
                             ": " + cudaGetErrorString(status));
}

template <class Program>
void DeviceRunner::operator()(const char* kernel, const LaunchPlan& plan, const Program& program) {
  check_plan(kernel, plan);
  if (plan.threads > Program::kMaxThreads)
    throw std::runtime_error(std::string(kernel) + ": invalid launch plan: " +
                             std::to_string(plan.threads) + " threads, above the kernel's bound " +
                             std::to_string(Program::kMaxThreads));
  const dim3 grid(static_cast<unsigned>(plan.grid_x), static_cast<unsigned>(plan.grid_y),
                  static_cast<unsigned>(plan.grid_z));
  run_block_program<Program><<<grid, plan.threads, plan.shared_bytes,
                               reinterpret_cast<cudaStream_t>(stream_)>>>(program);
  check_cuda(kernel, cudaGetLastError());
}

}  // namespace convlab::cuda
