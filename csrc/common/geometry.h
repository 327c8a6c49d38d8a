// Conv geometry: the one description of a windowed NHWC operation that the CPU kernels,
// the CUDA kernels and the bindings all share.
//
// A window op (conv2d, depthwise conv2d, pooling) reads input pixel
//     ih = oh * stride_h - pad_top  + kh * dilation_h
//     iw = ow * stride_w - pad_left + kw * dilation_w
// for output pixel (oh, ow) and kernel tap (kh, kw); taps that land outside
// [0, in_height) x [0, in_width) read zero (conv) or are skipped (pooling).
//
// Padding follows Keras/TensorFlow exactly:
//   "valid": no padding, out = floor((in - dilated_kernel) / stride) + 1
//   "same":  out = ceil(in / stride); total padding
//            max((out - 1) * stride + dilated_kernel - in, 0), the smaller half before.
//
// A transposed conv (Keras Conv2DTranspose) is described by the geometry of the forward
// conv whose input gradient it computes: that conv's input is the transposed conv's
// output and its output is the transposed conv's input. pad_bottom / pad_right may be
// negative there: the forward conv then ignores trailing rows that the transposed conv
// leaves at zero (Keras "valid" with stride larger than the kernel does that).
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "hd.h"

namespace convlab {

using index_t = std::int64_t;

enum class Padding { Valid, Same, Explicit };

struct Conv2dGeometry {
  index_t batch = 0;
  index_t in_height = 0, in_width = 0, in_channels = 0;
  index_t kernel_height = 0, kernel_width = 0;
  index_t out_height = 0, out_width = 0, out_channels = 0;
  index_t stride_h = 1, stride_w = 1;
  index_t dilation_h = 1, dilation_w = 1;
  index_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  index_t depth_multiplier = 1;  // depthwise only: out_channels = in_channels * depth_multiplier

  CONVLAB_HD index_t dilated_kernel_height() const { return (kernel_height - 1) * dilation_h + 1; }
  CONVLAB_HD index_t dilated_kernel_width() const { return (kernel_width - 1) * dilation_w + 1; }
  CONVLAB_HD index_t in_pixels() const { return batch * in_height * in_width; }
  CONVLAB_HD index_t out_pixels() const { return batch * out_height * out_width; }
  // Rows of the implicit im2col matrix have this many columns: one per (kh, kw, ci).
  CONVLAB_HD index_t patch_size() const { return kernel_height * kernel_width * in_channels; }
};

// Thrown for invalid geometry; the bindings translate it to Python's ValueError.
struct GeometryError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

namespace detail {

// Every size, stride, dilation and padding is at most 2^31 - 1, so that products of two
// of them (a dilated kernel, in * stride) cannot overflow 64-bit arithmetic.
constexpr index_t kMaxExtent = (index_t(1) << 31) - 1;

inline void require_positive(const char* name, index_t value) {
  if (value <= 0 || value > kMaxExtent)
    throw GeometryError(std::string(name) + " must be in [1, 2^31 - 1], got " + std::to_string(value));
}

inline void require_non_negative(const char* name, index_t value) {
  if (value < 0 || value > kMaxExtent)
    throw GeometryError(std::string(name) + " must be in [0, 2^31 - 1], got " + std::to_string(value));
}

// The sizes every window op has, each in [1, 2^31 - 1].
inline void require_extents(index_t batch, index_t in_height, index_t in_width,
                            index_t in_channels, index_t kernel_height, index_t kernel_width,
                            index_t out_channels, index_t stride_h, index_t stride_w,
                            index_t dilation_h, index_t dilation_w) {
  require_positive("batch size", batch);
  require_positive("input height", in_height);
  require_positive("input width", in_width);
  require_positive("input channels", in_channels);
  require_positive("kernel height", kernel_height);
  require_positive("kernel width", kernel_width);
  require_positive("output channels", out_channels);
  require_positive("stride height", stride_h);
  require_positive("stride width", stride_w);
  require_positive("dilation height", dilation_h);
  require_positive("dilation width", dilation_w);
}

// Output length and padding along one axis of a forward window op.
inline void window_axis(const char* axis, index_t in, index_t kernel, index_t stride,
                        index_t dilation, Padding padding, index_t explicit_before,
                        index_t explicit_after, index_t* out, index_t* before,
                        index_t* after) {
  const index_t dilated = (kernel - 1) * dilation + 1;
  if (padding == Padding::Same) {
    *out = (in + stride - 1) / stride;
    const index_t total = std::max<index_t>((*out - 1) * stride + dilated - in, 0);
    *before = total / 2;
    *after = total - *before;
    return;
  }
  if (padding == Padding::Valid) {
    *before = *after = 0;
  } else {
    require_non_negative("explicit padding", explicit_before);
    require_non_negative("explicit padding", explicit_after);
    *before = explicit_before;
    *after = explicit_after;
  }
  const index_t padded = in + *before + *after;
  if (padded < dilated)
    throw GeometryError(std::string("the ") + axis + " of the input (" + std::to_string(in) +
                        (*before + *after ? " plus padding " + std::to_string(*before + *after) : "") +
                        ") is smaller than the " + axis + " of the dilated window (" +
                        std::to_string(dilated) + "); the output would be empty");
  *out = (padded - dilated) / stride + 1;
}

}  // namespace detail

// Forward windowed op on an NHWC input: conv2d, depthwise conv2d (out_channels =
// in_channels * depth_multiplier) and pooling (out_channels = in_channels).
inline Conv2dGeometry make_conv2d_geometry(index_t batch, index_t in_height, index_t in_width,
                                           index_t in_channels, index_t kernel_height,
                                           index_t kernel_width, index_t out_channels,
                                           index_t stride_h, index_t stride_w,
                                           index_t dilation_h, index_t dilation_w,
                                           Padding padding, index_t pad_top = 0,
                                           index_t pad_bottom = 0, index_t pad_left = 0,
                                           index_t pad_right = 0) {
  detail::require_extents(batch, in_height, in_width, in_channels, kernel_height, kernel_width,
                          out_channels, stride_h, stride_w, dilation_h, dilation_w);
  Conv2dGeometry g;
  g.batch = batch;
  g.in_height = in_height;
  g.in_width = in_width;
  g.in_channels = in_channels;
  g.kernel_height = kernel_height;
  g.kernel_width = kernel_width;
  g.out_channels = out_channels;
  g.stride_h = stride_h;
  g.stride_w = stride_w;
  g.dilation_h = dilation_h;
  g.dilation_w = dilation_w;
  detail::window_axis("height", in_height, kernel_height, stride_h, dilation_h, padding,
                      pad_top, pad_bottom, &g.out_height, &g.pad_top, &g.pad_bottom);
  detail::window_axis("width", in_width, kernel_width, stride_w, dilation_w, padding,
                      pad_left, pad_right, &g.out_width, &g.pad_left, &g.pad_right);
  return g;
}

// Depthwise conv2d: out_channels = in_channels * depth_multiplier.
inline Conv2dGeometry make_depthwise_conv2d_geometry(
    index_t batch, index_t in_height, index_t in_width, index_t in_channels,
    index_t kernel_height, index_t kernel_width, index_t depth_multiplier, index_t stride_h,
    index_t stride_w, index_t dilation_h, index_t dilation_w, Padding padding,
    index_t pad_top = 0, index_t pad_bottom = 0, index_t pad_left = 0, index_t pad_right = 0) {
  detail::require_positive("depth multiplier", depth_multiplier);
  detail::require_positive("input channels", in_channels);
  Conv2dGeometry g = make_conv2d_geometry(batch, in_height, in_width, in_channels,
                                          kernel_height, kernel_width,
                                          in_channels * depth_multiplier, stride_h, stride_w,
                                          dilation_h, dilation_w, padding, pad_top,
                                          pad_bottom, pad_left, pad_right);
  g.depth_multiplier = depth_multiplier;
  return g;
}

// Pooling: a window op with one output channel per input channel and no dilation.
inline Conv2dGeometry make_pool2d_geometry(index_t batch, index_t in_height, index_t in_width,
                                           index_t channels, index_t pool_height,
                                           index_t pool_width, index_t stride_h,
                                           index_t stride_w, Padding padding,
                                           index_t pad_top = 0, index_t pad_bottom = 0,
                                           index_t pad_left = 0, index_t pad_right = 0) {
  detail::require_positive("pool height", pool_height);
  detail::require_positive("pool width", pool_width);
  Conv2dGeometry g = make_conv2d_geometry(batch, in_height, in_width, channels, pool_height,
                                          pool_width, channels, stride_h, stride_w, 1, 1,
                                          padding, pad_top, pad_bottom, pad_left, pad_right);
  // A window made only of padding would have no cell to take a max or mean of.
  if (g.pad_top >= pool_height || g.pad_bottom >= pool_height || g.pad_left >= pool_width ||
      g.pad_right >= pool_width)
    throw GeometryError("pooling padding must be smaller than the pool size, got padding (" +
                        std::to_string(g.pad_top) + ", " + std::to_string(g.pad_bottom) + ", " +
                        std::to_string(g.pad_left) + ", " + std::to_string(g.pad_right) +
                        ") for pool size (" + std::to_string(pool_height) + ", " +
                        std::to_string(pool_width) + ")");
  return g;
}

namespace detail {

// Keras' deconv_output_length, and the TensorFlow padding of the conv it inverts.
inline void transpose_axis(const char* axis, index_t in, index_t kernel, index_t stride,
                           index_t dilation, Padding padding, index_t output_padding,
                           bool has_output_padding, index_t* out, index_t* before,
                           index_t* after) {
  const index_t dilated = (kernel - 1) * dilation + 1;
  if (padding == Padding::Explicit)
    throw GeometryError("conv2d_transpose supports padding 'valid' or 'same' (as Keras)");
  if (has_output_padding) {
    if (output_padding < 0 || output_padding >= stride)
      throw GeometryError(std::string("output_padding along the ") + axis + " must be in [0, stride=" +
                          std::to_string(stride) + "), got " + std::to_string(output_padding));
    const index_t pad = padding == Padding::Same ? dilated / 2 : 0;
    *out = (in - 1) * stride + dilated - 2 * pad + output_padding;
  } else if (padding == Padding::Same) {
    *out = in * stride;
  } else {
    *out = in * stride + std::max<index_t>(dilated - stride, 0);
  }
  if (*out <= 0)
    throw GeometryError(std::string("conv2d_transpose output ") + axis + " would be " +
                        std::to_string(*out) + "; it must be at least 1");
  if (padding == Padding::Same) {
    const index_t total = std::max<index_t>((in - 1) * stride + dilated - *out, 0);
    *before = total / 2;
  } else {
    *before = 0;
  }
  // Chosen so that the forward conv over the transposed output has exactly `in` outputs.
  *after = (in - 1) * stride + dilated - *out - *before;
}

}  // namespace detail

// Transposed conv from an NHWC input (batch, in_height, in_width, in_channels) to
// out_channels, returned as the geometry of the forward conv it is the gradient of
// (see the file comment): geometry.in_* describe the transposed conv's output,
// geometry.out_* its input. Its kernel (kh, kw, out_channels, in_channels) is then the
// forward conv's kernel (kh, kw, geometry.in_channels, geometry.out_channels).
inline Conv2dGeometry make_conv2d_transpose_geometry(
    index_t batch, index_t in_height, index_t in_width, index_t in_channels,
    index_t kernel_height, index_t kernel_width, index_t out_channels, index_t stride_h,
    index_t stride_w, index_t dilation_h, index_t dilation_w, Padding padding,
    bool has_output_padding = false, index_t output_padding_h = 0,
    index_t output_padding_w = 0) {
  detail::require_extents(batch, in_height, in_width, in_channels, kernel_height, kernel_width,
                          out_channels, stride_h, stride_w, dilation_h, dilation_w);
  Conv2dGeometry g;
  g.batch = batch;
  g.out_height = in_height;
  g.out_width = in_width;
  g.out_channels = in_channels;
  g.in_channels = out_channels;
  g.kernel_height = kernel_height;
  g.kernel_width = kernel_width;
  g.stride_h = stride_h;
  g.stride_w = stride_w;
  g.dilation_h = dilation_h;
  g.dilation_w = dilation_w;
  detail::transpose_axis("height", in_height, kernel_height, stride_h, dilation_h, padding,
                         output_padding_h, has_output_padding, &g.in_height, &g.pad_top,
                         &g.pad_bottom);
  detail::transpose_axis("width", in_width, kernel_width, stride_w, dilation_w, padding,
                         output_padding_w, has_output_padding, &g.in_width, &g.pad_left,
                         &g.pad_right);
  return g;
}

}  // namespace convlab
