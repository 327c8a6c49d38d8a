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
//   backward input   dx     = dy' * kernel'             (implicit: per stride phase, the
//                                                          rows of dy that reach the phase's
//                                                          input pixels; see StridePhase)
//   backward kernel  dkernel = P^T * dy                   (implicit again; the pixels
//                                                          are split across threads and
//                                                          the partial sums added)
//
// Routes (chosen per call; every route computes the same sums, and the reference,
// gradient and fuzz tests run through all of them):
//   forward          the indirect conv (indirect_conv.h): P is read in place, never
//                    packed, through a pointer per pixel and an offset per tap.
//   backward input   the patch gradient (dP = dy * kernel^T, added back by col2im tile
//                    by tile) for few input channels, for strides above 1, and where the
//                    indirect conv would multiply mostly zeros; otherwise, at stride 1, the
//                    indirect conv of the zero-padded dy with the turned kernel; otherwise
//                    (batch smaller than the thread count) the GEMM per stride phase.
//   backward kernel  the indirect conv transposed (a reduction over pixels).
//   The implicit GEMM routes (Im2colPackA, Im2colTransposedPackA, the pointwise GEMM)
//   remain for explicit paddings so large that a padded copy of x would not be worth it.
//
// Versions:
//   1. implicit-GEMM forward and kernel gradient on the blocked GEMM of gemm.h; the
//      input gradient as dP = dy * kernel^T materialized per group of images, then a
//      race-free col2im gather. Correct, but dP is kh*kw times the size of dx, and
//      writing and re-reading it made the input gradient 2-3x slower than the forward.
//   2. the input gradient as an implicit GEMM per stride phase: nothing materialized at
//      stride 1, and no multiplications by the zeros between strided outputs (which a
//      "dilate dy, then convolve" formulation would spend 3/4 of its time on at stride 2).
//   3. (this one) packing the im2col matrix cost as much as the multiply-adds on the
//      books' thin shapes (32-64 output channels): the indirect conv reads it in place,
//      the micro-kernel uses the machine's vector width (12 x 32 floats with AVX-512),
//      and dP comes back as version 1's col2im, fused per register tile so that nothing
//      is materialized. See benches/NOTES.md for the measurements.
//   A 1x1 conv with stride 1 and no padding skips im2col entirely: P is x itself.
#include <algorithm>
#include <vector>

#include "gemm.h"
#include "indirect_conv.h"
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

// The input gradient, split by stride phase. Input row ih is read by tap kh exactly when
// ih + pad_top - kh*dilation_h = oh*stride_h for some 0 <= oh < out_height, so only the
// taps with (kh*dilation_h) % stride_h == (ih + pad_top) % stride_h can reach it. Grouping
// the input pixels by their phase ((ih + pad_top) % stride_h, (iw + pad_left) % stride_w)
// turns the gradient into one dense GEMM per phase, with no multiplications by the
// zeros a strided conv leaves between its outputs:
//   rows     the input pixels (n, ih, iw) of the phase
//   columns  the input channels ci
//   sum over (kh, kw, co) for the phase's taps: grad_y[n, oh, ow, co] * kernel[kh, kw, ci, co]
// With stride 1 there is a single phase holding every pixel in order.
struct StridePhase {
  index_t first_h = 0, rows_h = 0, first_w = 0, rows_w = 0;  // input pixels of the phase
  std::vector<index_t> taps_h, taps_w;                         // kernel taps that reach them
  // The phase whose first input row is first_h (< stride_h) and first column first_w.
  StridePhase(const Conv2dGeometry& g, index_t first_row, index_t first_column)
      : first_h(first_row), first_w(first_column) {
    const index_t phase_h = (first_h + g.pad_top) % g.stride_h;
    const index_t phase_w = (first_w + g.pad_left) % g.stride_w;
    rows_h = first_h < g.in_height ? (g.in_height - 1 - first_h) / g.stride_h + 1 : 0;
    rows_w = first_w < g.in_width ? (g.in_width - 1 - first_w) / g.stride_w + 1 : 0;
    for (index_t kh = 0; kh < g.kernel_height; ++kh)
      if ((kh * g.dilation_h) % g.stride_h == phase_h) taps_h.push_back(kh);
    for (index_t kw = 0; kw < g.kernel_width; ++kw)
      if ((kw * g.dilation_w) % g.stride_w == phase_w) taps_w.push_back(kw);
  }
  index_t pixels(index_t batch) const { return batch * rows_h * rows_w; }
  index_t taps() const { return index_t(taps_h.size() * taps_w.size()); }
};

// Packs rows (input pixels of a phase) x columns (phase taps x output channels) of the
// phase's grad_y matrix, reading runs of consecutive co straight from grad_y.
template <typename T>
struct PhasePackA {
  const Conv2dGeometry& g;
  const StridePhase& phase;
  const T* grad_y;
  void operator()(T* dst, index_t i0, index_t mc, index_t k0, index_t kc) const {
    constexpr index_t MR = GemmBlocking<T>::MR;
    const index_t C = g.out_channels, rows_total = phase.pixels(g.batch);
    const index_t taps_w = index_t(phase.taps_w.size());
    for (index_t p = 0; p < mc; p += MR) {
      T* panel = dst + p * kc;
      index_t n[MR], ih[MR], iw[MR];
      bool live[MR];
      for (index_t ii = 0; ii < MR; ++ii) {
        const index_t row = i0 + p + ii;
        live[ii] = p + ii < mc && row < rows_total;
        if (!live[ii]) continue;
        const index_t b = row % phase.rows_w, a = (row / phase.rows_w) % phase.rows_h;
        n[ii] = row / (phase.rows_w * phase.rows_h);
        ih[ii] = phase.first_h + a * g.stride_h;
        iw[ii] = phase.first_w + b * g.stride_w;
      }
      index_t k = 0;
      while (k < kc) {
        const index_t tap = (k0 + k) / C, co = (k0 + k) % C;
        const index_t kh = phase.taps_h[tap / taps_w], kw = phase.taps_w[tap % taps_w];
        const index_t run = std::min(C - co, kc - k);
        for (index_t ii = 0; ii < MR; ++ii) {
          T* out = panel + k * MR + ii;
          const T* src = nullptr;
          if (live[ii]) {
            // Exact divisions: the phase guarantees the stride divides these.
            const index_t oh = (ih[ii] + g.pad_top - kh * g.dilation_h) / g.stride_h;
            const index_t ow = (iw[ii] + g.pad_left - kw * g.dilation_w) / g.stride_w;
            const bool inside = ih[ii] + g.pad_top - kh * g.dilation_h >= 0 &&
                                iw[ii] + g.pad_left - kw * g.dilation_w >= 0 &&
                                oh < g.out_height && ow < g.out_width;
            if (inside) src = grad_y + ((n[ii] * g.out_height + oh) * g.out_width + ow) * C + co;
          }
          if (src) {
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

// Packs rows (phase taps x output channels) x columns (input channels) of the kernel:
// element ((kh, kw, co), ci) is kernel[kh, kw, ci, co].
template <typename T>
struct PhasePackB {
  const Conv2dGeometry& g;
  const StridePhase& phase;
  const T* kernel;
  void operator()(T* dst, index_t k0, index_t kc, index_t j0, index_t nc) const {
    constexpr index_t NR = GemmBlocking<T>::NR;
    const index_t C = g.out_channels, Cin = g.in_channels;
    const index_t taps_w = index_t(phase.taps_w.size());
    for (index_t q = 0; q < nc; q += NR) {
      const index_t cols = std::min(NR, nc - q);
      T* panel = dst + q * kc;
      for (index_t k = 0; k < kc; ++k) {
        const index_t tap = (k0 + k) / C, co = (k0 + k) % C;
        const index_t kh = phase.taps_h[tap / taps_w], kw = phase.taps_w[tap % taps_w];
        const T* src = kernel + ((kh * g.kernel_width + kw) * Cin + j0 + q) * C + co;
        T* out = panel + k * NR;
        for (index_t jj = 0; jj < cols; ++jj) out[jj] = src[jj * C];
        for (index_t jj = cols; jj < NR; ++jj) out[jj] = T(0);
      }
    }
  }
};

// The input x of the conv described by g, zero-padded so that every tap of every output
// pixel lies inside it; fails (returns false) when the padding would cost too much memory.
template <typename T>
bool padded_input(const Conv2dGeometry& g, const T* x, PaddedImage<T>* image, IndirectConv* conv) {
  const index_t height = std::max(g.pad_top + g.in_height,
                                  (g.out_height - 1) * g.stride_h + g.dilated_kernel_height());
  const index_t width = std::max(g.pad_left + g.in_width,
                                 (g.out_width - 1) * g.stride_w + g.dilated_kernel_width());
  if (!padding_is_affordable(g.in_pixels() * g.in_channels, g.batch * height * width * g.in_channels))
    return false;
  *image = pad_image(x, g.batch, g.in_height, g.in_width, g.in_channels, g.pad_top, g.pad_left,
                     height, width);
  *conv = IndirectConv{g.out_height, g.out_width, g.kernel_height, g.kernel_width,
                       g.stride_h, g.stride_w, g.dilation_h, g.dilation_w};
  return true;
}

// The input gradient at stride 1 as a conv of grad_y, zero-padded by the dilated kernel's
// extent less the forward padding, with the kernel turned by 180 degrees and its channel
// axes swapped: input pixel (ih, iw) collects tap (kh, kw) from output pixel
// (ih + pad_top - kh*dilation_h, iw + pad_left - kw*dilation_w). Returns false when the
// forward padding exceeds the kernel's extent (explicit paddings only) or is too large.
template <typename T>
bool indirect_backward_input(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                             const T* bias, T* grad_x) {
  if (g.stride_h != 1 || g.stride_w != 1) return false;
  const index_t KH = g.kernel_height, KW = g.kernel_width, Cin = g.in_channels, Cout = g.out_channels;
  const index_t top = (KH - 1) * g.dilation_h - g.pad_top, left = (KW - 1) * g.dilation_w - g.pad_left;
  if (top < 0 || left < 0) return false;
  const index_t height = std::max(top + g.out_height, g.in_height + (KH - 1) * g.dilation_h);
  const index_t width = std::max(left + g.out_width, g.in_width + (KW - 1) * g.dilation_w);
  if (!padding_is_affordable(g.out_pixels() * Cout, g.batch * height * width * Cout)) return false;
  const PaddedImage<T> dy = pad_image(grad_y, g.batch, g.out_height, g.out_width, Cout, top, left,
                                      height, width);
  const IndirectConv conv{g.in_height, g.in_width, KH, KW, 1, 1, g.dilation_h, g.dilation_w};
  // B[(kh', kw', co), ci] = kernel[KH-1-kh', KW-1-kw', ci, co]
  const std::vector<T> packed = pack_panels<T>(KH * KW * Cout, Cin, [&](index_t k, index_t ci) {
    const index_t tap = k / Cout, co = k % Cout;
    const index_t kh = KH - 1 - tap / KW, kw = KW - 1 - tap % KW;
    return kernel[((kh * KW + kw) * Cin + ci) * Cout + co];
  });
  indirect_conv(dy, conv, packed.data(), Cin, grad_x, Cin, bias);
  return true;
}

// The input gradient through the patch gradient: dP = grad_y * kernel^T has one row per
// output pixel and one column per patch element (kh, kw, ci), and grad_x is dP added
// back onto the pixels each patch came from (col2im). It is computed tile by tile, each
// MR x NR tile added into grad_x at once, one image per thread so that no two threads
// add into the same pixel. It does exactly the conv's multiply-adds, where the other
// two routes waste some: the indirect conv of the padded grad_y multiplies the zeros of
// its border (most of the work for a 3x3 kernel on a 5x5 image), and any GEMM with
// N = in_channels fills only in_channels of each NR-wide register tile (the first
// layer's 1 or 3 channels).
template <typename T>
void patch_gradient_backward_input(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                                   const T* bias, T* grad_x) {
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  const index_t K = g.patch_size(), Cin = g.in_channels, Cout = g.out_channels;
  const index_t pixels = g.out_height * g.out_width, image = g.in_height * g.in_width * Cin;
  const std::vector<T> packed =
      pack_panels<T>(Cout, K, [&](index_t co, index_t k) { return kernel[k * Cout + co]; });
  const index_t panels = (K + NR - 1) / NR, taps = g.kernel_height * g.kernel_width;
  // Where each tap lands relative to the window's origin pixel.
  std::vector<index_t> tap_h(static_cast<std::size_t>(taps)), tap_w(tap_h), tap_offset(tap_h);
  for (index_t t = 0; t < taps; ++t) {
    tap_h[t] = (t / g.kernel_width) * g.dilation_h;
    tap_w[t] = (t % g.kernel_width) * g.dilation_w;
    tap_offset[t] = (tap_h[t] * g.in_width + tap_w[t]) * Cin;
  }
  // Per patch element: its tap, and its offset from the window's origin in grad_x.
  std::vector<index_t> element_tap(static_cast<std::size_t>(K)), element_offset(element_tap);
  for (index_t k = 0; k < K; ++k) {
    element_tap[k] = k / Cin;
    element_offset[k] = tap_offset[k / Cin] + k % Cin;
  }
  const index_t extent_h = g.dilated_kernel_height(), extent_w = g.dilated_kernel_width();
  const index_t zero_offset = 0;
#pragma omp parallel for schedule(dynamic, 1) if (g.batch > 1 && worth_parallel(g.out_pixels() * Cout * K / 8))
  for (index_t n = 0; n < g.batch; ++n) {
    T* dx = grad_x + n * image;
    if (bias) {
      for (index_t p = 0; p < g.in_height * g.in_width; ++p) std::copy_n(bias, Cin, dx + p * Cin);
    } else {
      std::fill_n(dx, image, T(0));
    }
    alignas(64) T tile[MR * NR];
    for (index_t r0 = 0; r0 < pixels; r0 += MR) {
      const index_t mr = std::min(MR, pixels - r0);
      const T* rows[MR];
      for (index_t i = 0; i < MR; ++i) rows[i] = grad_y + (n * pixels + r0 + std::min(i, mr - 1)) * Cout;
      for (index_t q = 0; q < panels; ++q) {
        indirect_micro_kernel<T>(0, 1, Cout, rows, &zero_offset, packed.data() + q * Cout * NR, tile,
                                 NR, MR, NR, false, nullptr);
        const index_t k0 = q * NR, k_end = std::min(K, k0 + NR);
        for (index_t i = 0; i < mr; ++i) {
          const index_t oh = (r0 + i) / g.out_width, ow = (r0 + i) % g.out_width;
          const index_t ih0 = oh * g.stride_h - g.pad_top, iw0 = ow * g.stride_w - g.pad_left;
          const bool inside = ih0 >= 0 && iw0 >= 0 && ih0 + extent_h <= g.in_height &&
                              iw0 + extent_w <= g.in_width;
          // The window's origin may lie in the padding: only origin + offset is an index.
          const index_t origin = (ih0 * g.in_width + iw0) * Cin;
          const T* src = tile + i * NR - k0;
          if (Cin < 8) {  // few channels: element by element
            for (index_t k = k0; k < k_end; ++k) {
              const index_t t = element_tap[k];
              const index_t ih = ih0 + tap_h[t], iw = iw0 + tap_w[t];
              if (inside || (ih >= 0 && ih < g.in_height && iw >= 0 && iw < g.in_width))
                dx[origin + element_offset[k]] += src[k];
            }
            continue;
          }
          // Runs of consecutive channels of one tap go to consecutive addresses.
          for (index_t k = k0; k < k_end;) {
            const index_t t = element_tap[k], ci = k - t * Cin, run = std::min(Cin - ci, k_end - k);
            const index_t ih = ih0 + tap_h[t], iw = iw0 + tap_w[t];
            if (inside || (ih >= 0 && ih < g.in_height && iw >= 0 && iw < g.in_width)) {
              T* dst = dx + origin + element_offset[k];
              for (index_t c = 0; c < run; ++c) dst[c] += src[k + c];
            }
            k += run;
          }
        }
      }
    }
  }
}

// Multiply-adds, in units of one register tile column, that each route of the input
// gradient spends per image at stride 1 (see patch_gradient_backward_input); the
// col2im adds of the patch route count as 16 multiply-adds each.
inline bool patch_gradient_is_cheaper(const Conv2dGeometry& g, index_t nr) {
  const auto round_up = [nr](index_t v) { return (v + nr - 1) / nr * nr; };
  const index_t K = g.patch_size();
  const double indirect = double(g.in_height * g.in_width) * double(g.kernel_height * g.kernel_width) *
                          double(g.out_channels) * double(round_up(g.in_channels));
  const double patch = double(g.out_height * g.out_width) *
                       (double(g.out_channels) * double(round_up(K)) + 16.0 * double(K));
  return patch < indirect;
}

}  // namespace

template <typename T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* kernel, const T* bias, T* y) {
  const index_t M = g.out_pixels(), N = g.out_channels, K = g.patch_size();
  PaddedImage<T> image;
  IndirectConv conv;
  if (padded_input(g, x, &image, &conv)) {
    const std::vector<T> packed = pack_panels<T>(K, N, [&](index_t k, index_t j) { return kernel[k * N + j]; });
    indirect_conv(image, conv, packed.data(), N, y, N, bias);
    return;
  }
  const StridedPackB<T> pack_kernel{kernel, N, 1};
  if (is_pointwise(g)) {
    gemm<T>(M, N, K, StridedPackA<T>{x, K, 1}, pack_kernel, y, N, false, bias);
  } else {
    gemm<T>(M, N, K, Im2colPackA<T>{g, x}, pack_kernel, y, N, false, bias);
  }
}

namespace {

// Shared by conv2d's input gradient and the transposed conv's forward pass (which adds
// its bias on the way).
template <typename T>
void conv2d_backward_input_with_bias(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                                     const T* bias, T* grad_x) {
  const index_t Cin = g.in_channels, Cout = g.out_channels;
  if (is_pointwise(g)) {
    // dx = dy * kernel^T: the indirect conv reads dy's rows in place (no padding at all).
    if (indirect_backward_input(g, grad_y, kernel, bias, grad_x)) return;
    // kernel^T[co, ci] lies at kernel[ci * Cout + co].
    gemm<T>(g.out_pixels(), Cin, Cout, StridedPackA<T>{grad_y, Cout, 1},
            StridedPackB<T>{kernel, 1, Cout}, grad_x, Cin, false, bias);
    return;
  }
  // Patch gradient for few input channels, for strided convs, and where the indirect
  // conv would mostly multiply zeros; it needs an image per thread to be race-free.
  const bool images_for_threads = g.batch >= (omp_in_parallel() ? 1 : omp_get_max_threads());
  const bool strided = g.stride_h != 1 || g.stride_w != 1;
  if (2 * Cin < GemmBlocking<T>::NR ||
      (images_for_threads && (strided || patch_gradient_is_cheaper(g, GemmBlocking<T>::NR)))) {
    patch_gradient_backward_input(g, grad_y, kernel, bias, grad_x);
    return;
  }
  if (indirect_backward_input(g, grad_y, kernel, bias, grad_x)) return;
  const bool single_phase = g.stride_h == 1 && g.stride_w == 1;
  std::vector<T> phase_rows;
  // One phase per residue of the input row (column) modulo the stride; a stride larger
  // than the input leaves only in_height (in_width) non-empty phases.
  for (index_t first_h = 0; first_h < std::min(g.stride_h, g.in_height); ++first_h)
    for (index_t first_w = 0; first_w < std::min(g.stride_w, g.in_width); ++first_w) {
      const StridePhase phase(g, first_h, first_w);
      const index_t M = phase.pixels(g.batch);
      if (M == 0) continue;
      // With stride 1 the phase's rows are grad_x's rows in order; otherwise they are
      // computed into a buffer and scattered to their pixels.
      T* out = grad_x;
      if (!single_phase) {
        phase_rows.resize(std::size_t(M * Cin));
        out = phase_rows.data();
      }
      gemm<T>(M, Cin, phase.taps() * Cout, PhasePackA<T>{g, phase, grad_y},
              PhasePackB<T>{g, phase, kernel}, out, Cin, false, bias);
      if (single_phase) continue;
#pragma omp parallel for schedule(static) if (worth_parallel(M * Cin))
      for (index_t row = 0; row < M; ++row) {
        const index_t b = row % phase.rows_w, a = (row / phase.rows_w) % phase.rows_h;
        const index_t n = row / (phase.rows_w * phase.rows_h);
        const index_t ih = phase.first_h + a * g.stride_h, iw = phase.first_w + b * g.stride_w;
        std::copy_n(out + row * Cin, Cin, grad_x + ((n * g.in_height + ih) * g.in_width + iw) * Cin);
      }
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
  PaddedImage<T> image;
  IndirectConv conv;
  if (padded_input(g, x, &image, &conv)) {
    indirect_conv_backward_kernel(image, conv, grad_y, N, grad_kernel);
    return;
  }
  // Split the reduction over output pixels across threads; each thread runs its own
  // (serial) GEMM into a private sum, then the sums are added. Chunks of at least
  // 256 pixels keep the GEMM efficient.
  const int threads = omp_get_max_threads();
  const index_t chunks = worth_parallel(P * K * N / 8)
                             ? std::max<index_t>(1, std::min<index_t>(threads, P / 256))
                             : 1;
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
  // Sums in double so that a float gradient over a million rows keeps its digits. Each
  // thread sums a fixed range of rows and the ranges' sums are added in order, so the
  // result does not depend on which thread finishes first.
  const int threads = worth_parallel(rows * channels) ? omp_get_max_threads() : 1;
  std::vector<double> partial(std::size_t(threads) * std::size_t(channels), 0.0);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int t = 0; t < threads; ++t) {
    double* sum = partial.data() + std::size_t(t) * std::size_t(channels);
    for (index_t r = rows * t / threads; r < rows * (t + 1) / threads; ++r) {
      const T* row = grad_y + r * channels;
#pragma omp simd
      for (index_t c = 0; c < channels; ++c) sum[c] += row[c];
    }
  }
  for (index_t c = 0; c < channels; ++c) {
    double total = 0.0;
    for (int t = 0; t < threads; ++t) total += partial[std::size_t(t) * std::size_t(channels) + c];
    grad_bias[c] = T(total);
  }
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
