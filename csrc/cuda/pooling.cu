// Instantiates the launchers of pooling.cuh for the GPU (DeviceRunner), in float and double.
#include "device_runner.cuh"
#include "pooling.cuh"

namespace convlab::cuda {

#define CONVLAB_INSTANTIATE(T) \
  template void max_pool2d_forward<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, T* y); \
  template void max_pool2d_backward<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, const T* grad_y, T* grad_x); \
  template void avg_pool2d_forward<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, T* y); \
  template void avg_pool2d_backward<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* grad_y, T* grad_x); \
  template void global_avg_pool2d_forward<DeviceRunner, T>(DeviceRunner& run, Variant variant, index_t batch, index_t pixels, index_t channels, const T* x, T* y); \
  template void global_avg_pool2d_backward<DeviceRunner, T>(DeviceRunner& run, Variant variant, index_t batch, index_t pixels, index_t channels, const T* grad_y, T* grad_x);

CONVLAB_INSTANTIATE(float)
CONVLAB_INSTANTIATE(double)
#undef CONVLAB_INSTANTIATE

}  // namespace convlab::cuda
