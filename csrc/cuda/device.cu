// Device query through the CUDA runtime. Never throws: a machine without a GPU or driver
// is an ordinary answer ("no CUDA-capable device is detected"), which convlab turns into
// the reason cuda_available() gives.
#include <cuda_runtime.h>

#include "device.h"

namespace convlab::cuda {

DeviceQuery query_devices() {
  DeviceQuery q;
  cudaRuntimeGetVersion(&q.runtime_version);
  if (cudaDriverGetVersion(&q.driver_version) != cudaSuccess) q.driver_version = 0;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    q.error = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later queries start clean
    return q;
  }
  if (count == 0) {
    q.error = "the CUDA runtime reports 0 devices";
    return q;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.compute_capability_major = prop.major;
    d.compute_capability_minor = prop.minor;
    d.total_memory_bytes = static_cast<long long>(prop.totalGlobalMem);
    d.multiprocessors = prop.multiProcessorCount;
    q.devices.push_back(d);
  }
  if (q.devices.empty()) q.error = "no device's properties could be read";
  return q;
}

}  // namespace convlab::cuda
