// Declarations of every CUDA kernel launcher. The arguments are those of the CPU kernels
// (cpu/kernels.h: NHWC, C-contiguous, Keras kernel layouts, the same geometry) with two
// in front:
//   run      a DeviceRunner (the GPU, one stream) or a HostRunner (the CPU, through the
//            host executor of exec.h); each launcher is a template over it, defined in
//            its family's .cuh and instantiated for DeviceRunner in the family's .cu;
//   variant  Variant::Fast (the default) or Variant::Reference (one thread per output).
// Element types: float, and double so that gradient checks can run on these kernels.
// Every launcher overwrites its outputs entirely and is deterministic: no atomics on
// floats, every sum in a fixed order.
#pragma once

#include "../common/geometry.h"
#include "exec.h"

namespace convlab::cuda {

// ---- conv2d (conv2d.cuh) ----
template <class Runner, class T>
void conv2d_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                    const T* kernel, const T* bias, T* y);
template <class Runner, class T>
void conv2d_backward_input(Runner& run, Variant variant, const Conv2dGeometry& g,
                           const T* grad_y, const T* kernel, T* grad_x);
template <class Runner, class T>
void conv2d_backward_kernel(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                            const T* grad_y, T* grad_kernel);
template <class Runner, class T>
void bias_backward(Runner& run, Variant variant, index_t rows, index_t channels,
                   const T* grad_y, T* grad_bias);
// Transposed conv by role swap (g from make_conv2d_transpose_geometry), as on the CPU.
template <class Runner, class T>
void conv2d_transpose_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                              const T* kernel, const T* bias, T* y);
template <class Runner, class T>
void conv2d_transpose_backward_input(Runner& run, Variant variant, const Conv2dGeometry& g,
                                     const T* grad_y, const T* kernel, T* grad_x);
template <class Runner, class T>
void conv2d_transpose_backward_kernel(Runner& run, Variant variant, const Conv2dGeometry& g,
                                      const T* x, const T* grad_y, T* grad_kernel);

// ---- depthwise conv2d (depthwise_conv2d.cuh) ----
template <class Runner, class T>
void depthwise_conv2d_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                              const T* kernel, const T* bias, T* y);
template <class Runner, class T>
void depthwise_conv2d_backward_input(Runner& run, Variant variant, const Conv2dGeometry& g,
                                     const T* grad_y, const T* kernel, T* grad_x);
template <class Runner, class T>
void depthwise_conv2d_backward_kernel(Runner& run, Variant variant, const Conv2dGeometry& g,
                                      const T* x, const T* grad_y, T* grad_kernel);

// ---- pooling (pooling.cuh) ----
template <class Runner, class T>
void max_pool2d_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x, T* y);
template <class Runner, class T>
void max_pool2d_backward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                         const T* grad_y, T* grad_x);
template <class Runner, class T>
void avg_pool2d_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x, T* y);
template <class Runner, class T>
void avg_pool2d_backward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* grad_y,
                         T* grad_x);
template <class Runner, class T>
void global_avg_pool2d_forward(Runner& run, Variant variant, index_t batch, index_t pixels,
                               index_t channels, const T* x, T* y);
template <class Runner, class T>
void global_avg_pool2d_backward(Runner& run, Variant variant, index_t batch, index_t pixels,
                                index_t channels, const T* grad_y, T* grad_x);

// ---- batch normalization (batch_norm.cuh), x viewed as (rows, channels) ----
template <class Runner, class T>
void batch_norm_forward_training(Runner& run, Variant variant, index_t rows, index_t channels,
                                 const T* x, const T* gamma, const T* beta, T* moving_mean,
                                 T* moving_variance, double momentum, double epsilon, T* y,
                                 T* batch_mean, T* batch_variance);
template <class Runner, class T>
void batch_norm_forward_inference(Runner& run, Variant variant, index_t rows, index_t channels,
                                  const T* x, const T* gamma, const T* beta,
                                  const T* moving_mean, const T* moving_variance, double epsilon,
                                  T* y);
template <class Runner, class T>
void batch_norm_backward(Runner& run, Variant variant, index_t rows, index_t channels,
                         const T* grad_y, const T* x, const T* gamma, const T* batch_mean,
                         const T* batch_variance, double epsilon, T* grad_x, T* grad_gamma,
                         T* grad_beta);

}  // namespace convlab::cuda
