// conv2d on the CPU: forward, gradient of the input, gradient of the kernel, gradient
// of the bias. NHWC activations, kernel (kh, kw, cin, cout), any stride, dilation and
// padding described by a Conv2dGeometry (see common/geometry.h for the index math:
// output pixel (oh, ow) and tap (kh, kw) read input pixel
// (oh*stride_h - pad_top + kh*dilation_h, ow*stride_w - pad_left + kw*dilation_w)).
//
// All three passes are GEMMs over the im2col matrix P: one row per output pixel
// (n, oh, ow), one column per patch element (kh, kw, ci), so P has
// batch*out_h*out_w rows and kh*kw*cin columns; the kernel is a (kh*kw*cin, cout)
// matrix as it lies in memory.
//
//   forward          y      = P  * kernel                (implicit: P is packed straight
//                                                          from x, never materialized)
//   backward input   dP     = dy * kernel^T, then col2im: every input pixel gathers the
//                                                          entries of dP that read it
//   backward kernel  dkernel = P^T * dy                   (implicit again; the pixels
//                                                          are split across threads and
//                                                          the partial sums added)
//
// Versions:
//   1. implicit-GEMM forward and kernel gradient on the blocked GEMM of gemm.h; the
//      input gradient materializes dP one group of images at a time (bounded memory)
//      and gathers it back race-free, so the scatter needs no atomics.
//   A 1x1 conv with stride 1 and no padding skips im2col entirely: P is x itself.
#include <algorithm>
#include <vector>

#include "gemm.h"
#include "kernels.h"

namespace convlab::cpu {
namespace {

bool is_pointwise(const Conv2dGeometry& g) {
  return g.kernel_height == 1 && g.kernel_width == 1 && g.stride_h == 1 && g.stride_w == 1 &&
         g.pad_top == 0 && g.pad_left == 0 && g.out_height == g.in_height &&
         g.out_width == g.in_width;
}

// Where the patch of one output pixel starts in the input.
struct PatchOrigin {
  const void* image = nullptr;  // null for rows past the end of the matrix
  index_t ih0 = 0, iw0 = 0;
};

template <typename T>
PatchOrigin patch_origin(const Conv2dGeometry& g, const T* x, index_t pixel) {
  PatchOrigin o;
  const index_t ow = pixel % g.out_width;
  const index_t oh = (pixel / g.out_width) % g.out_height;
  const index_t n = pixel / (g.out_width * g.out_height);
  o.image = x + n * g.in_height * g.in_width * g.in_channels;
  o.ih0 = oh * g.stride_h - g.pad_top;
  o.iw0 = ow * g.stride_w - g.pad_left;
  return o;
}

// Pointer to the run of input channels read by tap (kh, kw) of a patch, or null when
// the tap falls in the padding.
template <typename T>
const T* tap_pointer(const Conv2dGeometry& g, const PatchOrigin& o, index_t kh, index_t kw) {
  if (!o.image) return nullptr;
  const index_t ih = o.ih0 + kh * g.dilation_h, iw = o.iw0 + kw * g.dilation_w;
  if (ih < 0 || ih >= g.in_height || iw < 0 || iw >= g.in_width) return nullptr;
  return static_cast<const T*>(o.image) + (ih * g.in_width + iw) * g.in_channels;
}

// Packs rows [i0, i0+mc) (output pixels) x columns [k0, k0+kc) (patch elements) of P.
// Columns are walked in runs of consecutive input channels of one tap, which are
// contiguous in x.
template <typename T>
struct Im2colPackA {
  const Conv2dGeometry& g;
  const T* x;
  void operator()(T* dst, index_t i0, index_t mc, index_t k0, index_t kc) const {
    constexpr index_t MR = GemmBlocking<T>::MR;
    const index_t rows_total = g.out_pixels();
    for (index_t p = 0; p < mc; p += MR) {
      T* panel = dst + p * kc;
      PatchOrigin origin[MR];
      for (index_t ii = 0; ii < MR; ++ii) {
        const index_t pixel = i0 + p + ii;
        if (p + ii < mc && pixel < rows_total) origin[ii] = patch_origin(g, x, pixel);
      }
      index_t k = 0;
      while (k < kc) {
        const index_t tap = (k0 + k) / g.in_channels, ci = (k0 + k) % g.in_channels;
        const index_t kh = tap / g.kernel_width, kw = tap % g.kernel_width;
        const index_t run = std::min(g.in_channels - ci, kc - k);
        for (index_t ii = 0; ii < MR; ++ii) {
          const T* src = tap_pointer<T>(g, origin[ii], kh, kw);
          T* out = panel + k * MR + ii;
          if (src) {
            src += ci;
            for (index_t c = 0; c < run; ++c) out[c * MR] = src[c];
          } else {
            for (index_t c = 0; c < run; ++c) out[c * MR] = T(0);
          }
        }
        k += run;
      }
    }
  }
};

// Packs rows [i0, i0+mc) (patch elements) x columns [r0, r0+kc) (output pixels) of P^T,
// for pixels offset by `pixel_base`.
template <typename T>
struct Im2colTransposedPackA {
  const Conv2dGeometry& g;
  const T* x;
  index_t pixel_base;
  void operator()(T* dst, index_t i0, index_t mc, index_t r0, index_t kc) const {
    constexpr index_t MR = GemmBlocking<T>::MR;
    for (index_t r = 0; r < kc; ++r) {
      const PatchOrigin origin = patch_origin(g, x, pixel_base + r0 + r);
      for (index_t p = 0; p < mc; p += MR) {
        T* out = dst + p * kc + r * MR;
        const index_t rows = std::min(MR, mc - p);
        index_t ii = 0;
        while (ii < rows) {
          const index_t patch = i0 + p + ii;
          const index_t tap = patch / g.in_channels, ci = patch % g.in_channels;
          const index_t run = std::min(g.in_channels - ci, rows - ii);
          const T* src = tap_pointer<T>(g, origin, tap / g.kernel_width, tap % g.kernel_width);
          for (index_t c = 0; c < run; ++c) out[ii + c] = src ? src[ci + c] : T(0);
          ii += run;
        }
        for (; ii < MR; ++ii) out[ii] = T(0);
      }
    }
  }
};

// grad_x[n, ih, iw, ci] (+ bias[ci]) = sum over the taps (kh, kw) that read (ih, iw)
// from some output pixel (oh, ow) of d_patches[(n, oh, ow), (kh, kw, ci)].
// A tap reads (ih, iw) when ih + pad_top - kh*dilation_h = oh*stride_h with
// 0 <= oh < out_height (and likewise for the width). Each input pixel is written by one
// thread, so no two threads ever touch the same memory.
template <typename T>
void col2im_gather(const Conv2dGeometry& g, index_t images, const T* d_patches, const T* bias,
                   T* grad_x) {
  const index_t C = g.in_channels, patch = g.patch_size();
#pragma omp parallel
  {
    std::vector<T> sum(C);
#pragma omp for collapse(2) schedule(static)
    for (index_t n = 0; n < images; ++n)
      for (index_t ih = 0; ih < g.in_height; ++ih) {
        for (index_t iw = 0; iw < g.in_width; ++iw) {
          for (index_t c = 0; c < C; ++c) sum[c] = bias ? bias[c] : T(0);
          for (index_t kh = 0; kh < g.kernel_height; ++kh) {
            const index_t th = ih + g.pad_top - kh * g.dilation_h;
            if (th < 0 || th % g.stride_h) continue;
            const index_t oh = th / g.stride_h;
            if (oh >= g.out_height) continue;
            for (index_t kw = 0; kw < g.kernel_width; ++kw) {
              const index_t tw = iw + g.pad_left - kw * g.dilation_w;
              if (tw < 0 || tw % g.stride_w) continue;
              const index_t ow = tw / g.stride_w;
              if (ow >= g.out_width) continue;
              const T* src = d_patches + ((n * g.out_height + oh) * g.out_width + ow) * patch +
                             (kh * g.kernel_width + kw) * C;
#pragma omp simd
              for (index_t c = 0; c < C; ++c) sum[c] += src[c];
            }
          }
          T* out = grad_x + ((n * g.in_height + ih) * g.in_width + iw) * C;
          for (index_t c = 0; c < C; ++c) out[c] = sum[c];
        }
      }
  }
}

}  // namespace

template <typename T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias, T* y) {
  const index_t M = g.out_pixels(), N = g.out_channels, K = g.patch_size();
  const StridedPackB<T> pack_kernel{kernel, N, 1};
  if (is_pointwise(g)) {
    gemm<T>(M, N, K, StridedPackA<T>{x, K, 1}, pack_kernel, y, N, false, bias);
  } else {
    gemm<T>(M, N, K, Im2colPackA<T>{g, x}, pack_kernel, y, N, false, bias);
  }
}

namespace {

// Shared by conv2d's input gradient and the transposed conv's forward pass (which adds
// its bias while gathering).
template <typename T>
void conv2d_backward_input_with_bias(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                                     const T* bias, T* grad_x) {
  const index_t N = g.out_channels, K = g.patch_size();
  // dP = dy * kernel^T: kernel^T[co, patch] lies at kernel[patch * N + co].
  const StridedPackB<T> pack_kernel_t{kernel, 1, N};
  if (is_pointwise(g)) {
    gemm<T>(g.out_pixels(), K, N, StridedPackA<T>{grad_y, N, 1}, pack_kernel_t, grad_x, K, false,
            bias);
    return;
  }
  // dP for a group of images at a time: about 16M elements (64 MiB in float) at most.
  const index_t per_image = g.out_height * g.out_width * K;
  const index_t group = std::max<index_t>(1, std::min<index_t>(g.batch, (index_t(1) << 24) / per_image));
  AlignedBuffer<T> d_patches(group * per_image);
  for (index_t n0 = 0; n0 < g.batch; n0 += group) {
    const index_t images = std::min(group, g.batch - n0);
    const index_t rows = images * g.out_height * g.out_width;
    gemm<T>(rows, K, N,
            StridedPackA<T>{grad_y + n0 * g.out_height * g.out_width * N, N, 1},
            pack_kernel_t, d_patches.get(), K, false);
    col2im_gather<T>(g, images, d_patches.get(), bias,
                     grad_x + n0 * g.in_height * g.in_width * g.in_channels);
  }
}

}  // namespace

template <typename T>
void conv2d_backward_input(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                           T* grad_x) {
  conv2d_backward_input_with_bias<T>(g, grad_y, kernel, nullptr, grad_x);
}

template <typename T>
void conv2d_transpose_forward(const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias,
                              T* y) {
  conv2d_backward_input_with_bias<T>(g, x, kernel, bias, y);
}

template <typename T>
void conv2d_transpose_backward_input(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                                     T* grad_x) {
  conv2d_forward<T>(g, grad_y, kernel, nullptr, grad_x);
}

template <typename T>
void conv2d_transpose_backward_kernel(const Conv2dGeometry& g, const T* x, const T* grad_y,
                                      T* grad_kernel) {
  conv2d_backward_kernel<T>(g, grad_y, x, grad_kernel);
}

template <typename T>
void conv2d_backward_kernel(const Conv2dGeometry& g, const T* x, const T* grad_y,
                            T* grad_kernel) {
  const index_t K = g.patch_size(), N = g.out_channels, P = g.out_pixels();
  // Split the reduction over output pixels across threads; each thread runs its own
  // (serial) GEMM into a private sum, then the sums are added. Chunks of at least
  // 256 pixels keep the GEMM efficient.
  const int threads = omp_get_max_threads();
  const index_t chunks = std::max<index_t>(1, std::min<index_t>(threads, P / 256));
  std::vector<AlignedBuffer<T>> partial;
  for (index_t t = 1; t < chunks; ++t) partial.emplace_back(K * N);
  const bool pointwise = is_pointwise(g);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (index_t t = 0; t < chunks; ++t) {
    const index_t r0 = P * t / chunks, r1 = P * (t + 1) / chunks;
    T* out = t == 0 ? grad_kernel : partial[t - 1].get();
    const StridedPackB<T> pack_dy{grad_y + r0 * N, N, 1};
    if (pointwise) {
      // P^T[ci, pixel] = x[pixel * K + ci]
      gemm<T>(K, N, r1 - r0, StridedPackA<T>{x + r0 * K, 1, K}, pack_dy, out, N, false);
    } else {
      gemm<T>(K, N, r1 - r0, Im2colTransposedPackA<T>{g, x, r0}, pack_dy, out, N, false);
    }
  }
  for (index_t t = 1; t < chunks; ++t) {
    const T* src = partial[t - 1].get();
    for (index_t i = 0; i < K * N; ++i) grad_kernel[i] += src[i];
  }
}

template <typename T>
void bias_backward(index_t rows, index_t channels, const T* grad_y, T* grad_bias) {
  // Sums in double so that a float gradient over a million rows keeps its digits.
  std::vector<double> total(channels, 0.0);
#pragma omp parallel
  {
    std::vector<double> sum(channels, 0.0);
#pragma omp for schedule(static) nowait
    for (index_t r = 0; r < rows; ++r) {
      const T* row = grad_y + r * channels;
#pragma omp simd
      for (index_t c = 0; c < channels; ++c) sum[c] += row[c];
    }
#pragma omp critical
    for (index_t c = 0; c < channels; ++c) total[c] += sum[c];
  }
  for (index_t c = 0; c < channels; ++c) grad_bias[c] = T(total[c]);
}

#define CONVLAB_INSTANTIATE(T)                                                                  \
  template void conv2d_forward<T>(const Conv2dGeometry&, const T*, const T*, const T*, T*);    \
  template void conv2d_transpose_forward<T>(const Conv2dGeometry&, const T*, const T*, const T*, \
                                            T*);                                              \
  template void conv2d_transpose_backward_input<T>(const Conv2dGeometry&, const T*, const T*,  \
                                                   T*);                                       \
  template void conv2d_transpose_backward_kernel<T>(const Conv2dGeometry&, const T*, const T*, \
                                                    T*);                                      \
  template void conv2d_backward_input<T>(const Conv2dGeometry&, const T*, const T*, T*);       \
  template void conv2d_backward_kernel<T>(const Conv2dGeometry&, const T*, const T*, T*);      \
  template void bias_backward<T>(index_t, index_t, const T*, T*);
CONVLAB_INSTANTIATE(float)
CONVLAB_INSTANTIATE(double)
#undef CONVLAB_INSTANTIATE

}  // namespace convlab::cpu
