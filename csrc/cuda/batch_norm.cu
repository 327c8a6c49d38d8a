// Instantiates the launchers of batch_norm.cuh for the GPU (DeviceRunner), in float and double.
#include "device_runner.cuh"
#include "batch_norm.cuh"

namespace convlab::cuda {

#define CONVLAB_INSTANTIATE(T) \
  template void batch_norm_forward_training<DeviceRunner, T>(DeviceRunner& run, Variant variant, index_t rows, index_t channels, const T* x, const T* gamma, const T* beta, T* moving_mean, T* moving_variance, double momentum, double epsilon, T* y, T* batch_mean, T* batch_variance); \
  template void batch_norm_forward_inference<DeviceRunner, T>(DeviceRunner& run, Variant variant, index_t rows, index_t channels, const T* x, const T* gamma, const T* beta, const T* moving_mean, const T* moving_variance, double epsilon, T* y); \
  template void batch_norm_backward<DeviceRunner, T>(DeviceRunner& run, Variant variant, index_t rows, index_t channels, const T* grad_y, const T* x, const T* gamma, const T* batch_mean, const T* batch_variance, double epsilon, T* grad_x, T* grad_gamma, T* grad_beta);

CONVLAB_INSTANTIATE(float)
CONVLAB_INSTANTIATE(double)
#undef CONVLAB_INSTANTIATE

}  // namespace convlab::cuda
