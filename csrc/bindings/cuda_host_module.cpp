// convlab._cuda_host: the CUDA kernels run on the CPU through the host executor
// (cuda/exec.h). The block programs are the same source the GPU runs; here the host
// compiler builds them and HostRunner walks each grid block by block, thread by thread.
// It takes numpy arrays, float32 and float64, both variants, and is bound from the same
// table (kernel_table.h) as convlab._cpu and convlab._cuda.
//
// The submodule `plan` is the same table again with a runner that records each launch
// (kernel, grid, block, shared memory, workspace) instead of running it, so the launch
// planning is testable for any shape, including ones far past 2^31 elements.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/kernel_table.h"
#include "cuda/batch_norm.cuh"
#include "cuda/conv2d.cuh"
#include "cuda/depthwise_conv2d.cuh"
#include "cuda/exec.h"
#include "cuda/pooling.cuh"

namespace py = pybind11;
using namespace convlab;

namespace {

struct HostBackend {
  static constexpr const char* kModule = "convlab._cuda_host";
  static constexpr bool kDeviceMemory = false;
  static constexpr bool kHasReference = true;
  static constexpr bool kReleaseGil = true;
  using Runner = cuda::HostRunner;
  static Runner make_runner(std::uintptr_t) { return {}; }
  static void locate(bindings::ArrayView&, const std::string&) {}
};

// The launches recorded by the `plan` submodule's last call.
std::vector<cuda::RecordedLaunch> recorded_launches;
std::size_t recorded_workspace_bytes = 0;

struct PlanBackend {
  static constexpr const char* kModule = "convlab._cuda_host.plan";
  static constexpr bool kDeviceMemory = false;
  static constexpr bool kHasReference = true;
  static constexpr bool kReleaseGil = false;
  using Runner = cuda::PlanRecorder;
  static Runner make_runner(std::uintptr_t) {
    recorded_launches.clear();
    recorded_workspace_bytes = 0;
    return Runner(&recorded_launches, &recorded_workspace_bytes);
  }
  static void locate(bindings::ArrayView&, const std::string&) {}
};

}  // namespace

PYBIND11_MODULE(_cuda_host, m) {
  m.doc() = "convlab's CUDA kernels on the host executor (CPU). Use convlab.kernels.";
  py::module_::import("convlab._cpu");  // Conv2dGeometry is registered there
  bindings::bind_kernels<HostBackend>(m);

  py::module_ plan = m.def_submodule(
      "plan", "The CUDA kernels' launch planning: each call records its launches, run nothing.");
  bindings::bind_kernels<PlanBackend>(plan);
  plan.def("launches", []() {
    py::list out;
    for (const auto& r : recorded_launches) {
      py::dict d;
      d["kernel"] = r.kernel;
      d["grid"] = py::make_tuple(r.plan.grid_x, r.plan.grid_y, r.plan.grid_z);
      d["threads"] = r.plan.threads;
      d["shared_bytes"] = r.plan.shared_bytes;
      d["max_threads"] = r.max_threads;
      out.append(d);
    }
    py::dict result;
    result["launches"] = out;
    result["workspace_bytes"] = recorded_workspace_bytes;
    return result;
  }, "The launches the last call of this submodule planned, and the workspace it asked for.");
  m.attr("max_shared_bytes") = cuda::kMaxSharedBytes;
  m.attr("grid_stride_max_blocks") = cuda::kGridStrideMaxBlocks;
}
