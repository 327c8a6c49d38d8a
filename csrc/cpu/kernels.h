// Declarations of every CPU kernel. Each is a template over the element type and is
// instantiated for float and double in its own file. All tensors are NHWC and
// C-contiguous; the caller (the bindings) has checked shapes against the geometry.
//
// Kernel layouts, as Keras stores them:
//   conv2d            (kernel_height, kernel_width, in_channels, out_channels)
//   depthwise conv2d  (kernel_height, kernel_width, in_channels, depth_multiplier)
// A transposed conv uses the conv2d kernels with make_conv2d_transpose_geometry.
#pragma once

#include "../common/geometry.h"

namespace convlab::cpu {

// ---- conv2d (conv2d.cpp): indirect conv (indirect_conv.h) and implicit GEMM (gemm.h) ----
// y[n, oh, ow, co] = bias[co] + sum_{kh, kw, ci} x[n, ih, iw, ci] * kernel[kh, kw, ci, co]
template <typename T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias, T* y);
// grad_x = d(sum(grad_y * y)) / dx   (overwrites grad_x)
template <typename T>
void conv2d_backward_input(const Conv2dGeometry& g, const T* grad_y, const T* kernel, T* grad_x);
// grad_kernel = d(sum(grad_y * y)) / dkernel   (overwrites grad_kernel)
template <typename T>
void conv2d_backward_kernel(const Conv2dGeometry& g, const T* x, const T* grad_y, T* grad_kernel);
// grad_bias[c] = sum over rows of grad_y[row, c], grad_y viewed as (rows, channels).
template <typename T>
void bias_backward(index_t rows, index_t channels, const T* grad_y, T* grad_bias);

// ---- conv2d transpose (conv2d.cpp); g from make_conv2d_transpose_geometry ----
// The transposed conv is the input gradient of the conv described by g, so
//   forward         = conv2d_backward_input (+ bias, length g.in_channels)
//   backward input  = conv2d_forward (no bias)
//   backward kernel = conv2d_backward_kernel with the roles of x and grad_y swapped.
// Kernel layout (kh, kw, transposed out_channels, transposed in_channels).
template <typename T>
void conv2d_transpose_forward(const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias,
                              T* y);
template <typename T>
void conv2d_transpose_backward_input(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                                     T* grad_x);
template <typename T>
void conv2d_transpose_backward_kernel(const Conv2dGeometry& g, const T* x, const T* grad_y,
                                      T* grad_kernel);

// ---- depthwise conv2d (depthwise_conv2d.cpp) ----
// y[n, oh, ow, c * dm + m] = bias[c * dm + m]
//     + sum_{kh, kw} x[n, ih, iw, c] * kernel[kh, kw, c, m]
// g.out_channels == g.in_channels * g.depth_multiplier; bias may be null.
template <typename T>
void depthwise_conv2d_forward(const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias,
                              T* y);
template <typename T>
void depthwise_conv2d_backward_input(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                                     T* grad_x);
template <typename T>
void depthwise_conv2d_backward_kernel(const Conv2dGeometry& g, const T* x, const T* grad_y,
                                      T* grad_kernel);

// ---- pooling (pooling.cpp); g.out_channels == g.in_channels, dilation 1 ----
// Max pooling skips padded cells; ties go to the first maximum in row-major window
// order, and a NaN in the window wins (it propagates, as in the frameworks).
template <typename T>
void max_pool2d_forward(const Conv2dGeometry& g, const T* x, T* y);
template <typename T>
void max_pool2d_backward(const Conv2dGeometry& g, const T* x, const T* grad_y, T* grad_x);
// Average pooling divides by the number of cells inside the input (padding excluded).
template <typename T>
void avg_pool2d_forward(const Conv2dGeometry& g, const T* x, T* y);
template <typename T>
void avg_pool2d_backward(const Conv2dGeometry& g, const T* grad_y, T* grad_x);
// x (batch, pixels, channels) -> y (batch, channels)
template <typename T>
void global_avg_pool2d_forward(index_t batch, index_t pixels, index_t channels, const T* x, T* y);
template <typename T>
void global_avg_pool2d_backward(index_t batch, index_t pixels, index_t channels, const T* grad_y,
                                T* grad_x);

// ---- batch normalization over all rows (N*H*W) per channel (batch_norm.cpp) ----
// gamma / beta may be null (scale=False / center=False: 1 and 0).
// Training: normalizes with the batch mean and biased variance, writes them to
// batch_mean / batch_variance, and updates in place
//   moving = moving * momentum + batch_stat * (1 - momentum).
template <typename T>
void batch_norm_forward_training(index_t rows, index_t channels, const T* x, const T* gamma,
                                 const T* beta, T* moving_mean, T* moving_variance,
                                 double momentum, double epsilon, T* y, T* batch_mean,
                                 T* batch_variance);
template <typename T>
void batch_norm_forward_inference(index_t rows, index_t channels, const T* x, const T* gamma,
                                  const T* beta, const T* moving_mean,
                                  const T* moving_variance, double epsilon, T* y);
// Backward of the training forward (batch statistics depend on x).
// grad_gamma / grad_beta may be null when not wanted.
template <typename T>
void batch_norm_backward(index_t rows, index_t channels, const T* grad_y, const T* x,
                         const T* gamma, const T* batch_mean, const T* batch_variance,
                         double epsilon, T* grad_x, T* grad_gamma, T* grad_beta);

}  // namespace convlab::cpu
