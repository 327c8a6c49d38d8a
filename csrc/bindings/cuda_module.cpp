// convlab._cuda: the CUDA side of convlab. For now it answers what GPUs the runtime sees;
// the kernels join it one operation at a time, with the same arguments as convlab._cpu.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cuda/device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "convlab CUDA module (device query; kernels come per operation).";
  m.def("query_devices", []() {
    const convlab::cuda::DeviceQuery q = convlab::cuda::query_devices();
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
