// Instantiates the launchers of conv2d.cuh for the GPU (DeviceRunner), in float and double.
#include "device_runner.cuh"
#include "conv2d.cuh"

namespace convlab::cuda {

#define CONVLAB_INSTANTIATE(T) \
  template void conv2d_forward<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias, T* y); \
  template void conv2d_backward_input<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* grad_y, const T* kernel, T* grad_x); \
  template void conv2d_backward_kernel<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, const T* grad_y, T* grad_kernel); \
  template void bias_backward<DeviceRunner, T>(DeviceRunner& run, Variant variant, index_t rows, index_t channels, const T* grad_y, T* grad_bias); \
  template void conv2d_transpose_forward<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias, T* y); \
  template void conv2d_transpose_backward_input<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* grad_y, const T* kernel, T* grad_x); \
  template void conv2d_transpose_backward_kernel<DeviceRunner, T>(DeviceRunner& run, Variant variant, const Conv2dGeometry& g, const T* x, const T* grad_y, T* grad_kernel);

CONVLAB_INSTANTIATE(float)
CONVLAB_INSTANTIATE(double)
#undef CONVLAB_INSTANTIATE

}  // namespace convlab::cuda
