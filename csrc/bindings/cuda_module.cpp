// convlab._cuda: the CUDA kernels on the GPU, bound from the same table (kernel_table.h)
// as convlab._cpu, plus the device query behind convlab.cuda_available().
//
// Arrays come in through __cuda_array_interface__ (CuPy arrays, torch CUDA tensors),
// without a copy. Each kernel is enqueued on the stream the caller passes (convlab.kernels
// passes CuPy's current stream) and never synchronizes the device; workspaces come from
// CuPy's memory pool, stream-ordered, and go back to it when the call returns. The GIL is
// kept: launches are asynchronous and take microseconds, and the workspace allocator
// calls into CuPy.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/kernel_table.h"
#include "cuda/device.h"
#include "cuda/device_runner.h"
#include "cuda/kernels.h"

namespace py = pybind11;
using namespace convlab;

namespace {

struct CudaBackend {
  static constexpr const char* kModule = "convlab._cuda";
  static constexpr bool kDeviceMemory = true;
  static constexpr bool kHasReference = true;
  static constexpr bool kReleaseGil = false;
  using Runner = cuda::DeviceRunner;

  static Runner make_runner(std::uintptr_t stream) {
    // Each workspace is a cupy.cuda.MemoryPointer kept alive by this closure until the
    // runner is destroyed at the end of the call; CuPy's pool then reuses it in stream
    // order, after the kernels that use it.
    auto keep = std::make_shared<std::vector<py::object>>();
    return Runner(stream, [keep](std::size_t bytes) -> void* {
      py::object memory = py::module_::import("cupy").attr("cuda").attr("alloc")(bytes);
      keep->push_back(memory);
      return reinterpret_cast<void*>(memory.attr("ptr").cast<std::uintptr_t>());
    });
  }

  static void locate(bindings::ArrayView& v, const std::string& where) {
    cudaPointerAttributes attributes{};
    const cudaError_t status = cudaPointerGetAttributes(&attributes, v.data);
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw std::invalid_argument(where + ": CUDA does not know its pointer (" +
                                  cudaGetErrorName(status) + ")");
    }
    if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged)
      throw std::invalid_argument(where + " exposes __cuda_array_interface__ but its memory is "
                                  "not device memory");
    v.device = attributes.device;
    int current = -1;
    cudaGetDevice(&current);
    if (v.device != current)
      throw std::invalid_argument(where + " is on GPU " + std::to_string(v.device) +
                                  " but the current device is GPU " + std::to_string(current) +
                                  "; run the call under `with cupy.cuda.Device(" +
                                  std::to_string(v.device) + "):`");
  }
};

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "convlab CUDA kernels (float32 and float64, NHWC). Use convlab.kernels.";
  py::module_::import("convlab._cpu");  // Conv2dGeometry is registered there
  bindings::bind_kernels<CudaBackend>(m);

  m.def("query_devices", []() {
    const cuda::DeviceQuery q = cuda::query_devices();
    py::list devices;
    for (const auto& d : q.devices) {
      py::dict info;
      info["index"] = d.index;
      info["name"] = d.name;
      info["compute_capability"] = py::make_tuple(d.compute_capability_major, d.compute_capability_minor);
      info["total_memory_bytes"] = d.total_memory_bytes;
      info["multiprocessors"] = d.multiprocessors;
      devices.append(info);
    }
    py::dict result;
    result["runtime_version"] = q.runtime_version;
    result["driver_version"] = q.driver_version;
    result["error"] = q.error;
    result["devices"] = devices;
    return result;
  }, "What the CUDA runtime reports: versions, an error string (empty if usable), devices.");
  m.attr("cuda_architectures") = CONVLAB_CUDA_ARCHITECTURES_STRING;
}
