// Instantiates the launchers of depthwise_conv2d.cuh for the GPU (DeviceRunner), in float and double.
#include "device_runner.cuh"
#include "depthwise_conv2d.cuh"

namespace convlab::cuda {

#define CONVLAB_INSTANTIATE(T) \
  template void depthwise_conv2d_forward<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias, T* y); \
  template void depthwise_conv2d_backward_input<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* grad_y, const T* kernel, T* grad_x); \
  template void depthwise_conv2d_backward_kernel<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, const T* grad_y, T* grad_kernel);

CONVLAB_INSTANTIATE(float)
CONVLAB_INSTANTIATE(double)
#undef CONVLAB_INSTANTIATE

}  // namespace convlab::cuda
