// DeviceRunner: runs block programs (cuda/exec.h) as CUDA kernels on one stream.
//
// This header is plain C++ so that the bindings, built by the host compiler, can hold a
// runner and pass it to the kernel launchers; the launch itself (operator()) is defined
// in device_runner.cuh, which only the .cu files include, and every launcher is
// instantiated for DeviceRunner there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "exec.h"

namespace convlab::cuda {

class DeviceRunner {
 public:
  // stream: a cudaStream_t as an integer (0 is the legacy default stream). allocate:
  // device memory for a workspace, valid in stream order until the call returns (the
  // bindings take it from CuPy's memory pool).
  DeviceRunner(std::uintptr_t stream, std::function<void*(std::size_t)> allocate)
      : stream_(stream), allocate_(std::move(allocate)) {}

  void* workspace(std::size_t bytes) { return bytes ? allocate_(bytes) : nullptr; }

  // Launches program on the plan's grid, then checks the launch; a failure throws
  // std::runtime_error naming the kernel and the CUDA error.
  template <class Program>
  void operator()(const char* kernel, const LaunchPlan& plan, const Program& program);

  std::uintptr_t stream() const { return stream_; }

 private:
  std::uintptr_t stream_;
  std::function<void*(std::size_t)> allocate_;
};

}  // namespace convlab::cuda
