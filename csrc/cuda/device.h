// What the CUDA runtime says about the GPUs of this machine. The kernels themselves live
// beside this file, one operation per .cu file.
#pragma once

#include <string>
#include <vector>

namespace convlab::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_capability_major = 0, compute_capability_minor = 0;
  long long total_memory_bytes = 0;
  int multiprocessors = 0;
};

struct DeviceQuery {
  int runtime_version = 0;  // CUDA runtime this module was built with, e.g. 13000
  int driver_version = 0;   // 0 when no driver is installed
  std::string error;        // empty when at least one device is usable
  std::vector<DeviceInfo> devices;
};

DeviceQuery query_devices();

}  // namespace convlab::cuda
