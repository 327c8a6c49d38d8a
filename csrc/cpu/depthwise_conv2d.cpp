// Depthwise conv2d on the CPU: forward, gradient of the input, gradient of the kernel.
// NHWC activations; kernel (kh, kw, in_channels, depth_multiplier) as Keras stores it.
// Every input channel c is convolved on its own with depth_multiplier filters; filter m
// of channel c writes output channel c*dm + m (dm = depth_multiplier).
//
//   x       (batch, in_height,  in_width,  C)
//   kernel  (kernel_height, kernel_width, C, dm)   = (kh, kw, C*dm) as it lies in memory
//   y       (batch, out_height, out_width, C*dm)
//
// Index math (common/geometry.h): output pixel (oh, ow) and tap (kh, kw) read input pixel
//     ih = oh*stride_h - pad_top  + kh*dilation_h
//     iw = ow*stride_w - pad_left + kw*dilation_w
// and taps outside the input read zero, so
//     y[n, oh, ow, c*dm + m]    = bias[c*dm + m]
//                                 + sum_{kh, kw} x[n, ih, iw, c] * kernel[kh, kw, c, m]
//     grad_x[n, ih, iw, c]      = sum over (oh, ow, kh, kw) that read (ih, iw), and m, of
//                                 grad_y[n, oh, ow, c*dm + m] * kernel[kh, kw, c, m]
//     grad_kernel[kh, kw, c, m] = sum_{n, oh, ow} x[n, ih, iw, c] * grad_y[n, oh, ow, c*dm + m]
//
// Loop order. A depthwise conv does only kh*kw multiply-adds per output element, too few
// for a GEMM to pay; the cost is in moving data. NHWC keeps the C channels of a pixel
// contiguous, and every tap multiplies a run of channels by a run of channels element by
// element, so the innermost loops always run over channels (SIMD), the taps around them,
// the pixels around those. Rows (n, oh) or (n, ih) are the parallel unit: there are enough
// of them to keep both cores busy at batch 1 as at batch 16. With dm = 1:
//   forward          output pixel (oh, ow): out[c] = bias[c] + sum_t a_t[c] * b_t[c] with
//                    a_t = x at (ih, iw) and b_t = kernel tap (kh, kw), over the taps
//                    inside the input (sum_of_products).
//   backward input   input pixel (ih, iw): the same sum with a_t = grad_y at (oh, ow) and
//                    b_t = kernel tap (kh, kw), over the (output pixel, tap) pairs that
//                    read (ih, iw), listed per axis by covering_windows(). A gather, not a
//                    scatter: every grad_x element has one writer, so threads need no
//                    atomics and no zero-fill pass.
//   backward kernel  each thread walks its output rows pixel by pixel and adds
//                    x at (ih, iw) * grad_y at (oh, ow) into a per-row float copy of
//                    grad_kernel for every tap (kh*kw*C values: L1/L2-sized), which it then
//                    adds into its own double copy; the thread copies are added at the end.
//                    So the long sum over batch*out_height rows runs in double while the
//                    hot loop stays in T, and the result does not depend on scheduling.
//
// sum_of_products keeps its partial sums in registers: it walks the channels in blocks of
// 8 vector registers and, for one block, runs over all the terms before storing, so a
// multiply-add costs two loads instead of the three loads and a store of adding each tap
// into y. With stride 1, four neighbouring pixels whose windows lie inside the input share
// every kernel tap and their input pixels are one pixel apart; sum_of_products<4> then
// loads each kernel vector once for the four (1.25 loads per multiply-add). At larger
// strides the four windows overlap less and the grouped walk measured 2x slower, so it is
// used for stride 1 only. Against version 1 (each tap added into y, one channel loop per
// tap), the forward and input gradient measured 1.3x (C = 256) to 3x (C = 32) faster at
// stride 1 and the same at stride 2, on one core of the 2-core AVX2 machine. The kernel
// gradient of a 3x3 kernel keeps the nine tap sums of a block of channels in registers along
// a whole output row (kernel_gradient_row_3x3); other kernel sizes keep version 1's loop.
//
// depth_multiplier > 1 is reduced to depth_multiplier 1: output channel c*dm + m reads only
// input channel c, so repeating every input channel dm times,
//     x_repeated[n, ih, iw, c*dm + m] = x[n, ih, iw, c],
// gives a one-filter-per-channel conv over C*dm channels with the same kernel and bias,
// in the same memory order. grad_x then sums the dm copies of each channel's gradient.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels.h"
#include "micro_kernel.h"
#include "parallel.h"
#include "window.h"

namespace convlab::cpu {
namespace {

// Channels [c0, c0 + registers*lanes) of `pixels` outputs at once: output p is
//     out[p*out_step + c] = init[c] + sum_t a[t][p*a_step + c] * b[t][c],
// with the partial sums in pixels*registers SIMD registers across all the terms, and each
// b[t] loaded once for all the pixels. The registers are spelled out because GCC, given
// the same loops over scalars, vectorizes across the terms with gathers instead.
template <int pixels, int registers, typename T>
inline void sum_of_products_block(index_t terms, const T* const* a, index_t a_step,
                                  const T* const* b, const T* init, index_t c0, T* out,
                                  index_t out_step) {
  using V = Vec<T>;  // one register (micro_kernel.h): + and * act lane by lane
  constexpr index_t lanes = kLanes<T>;
  V sum[pixels][registers];
#pragma GCC unroll 8
  for (int r = 0; r < registers; ++r) {
    V start = V{};
    if (init) std::memcpy(&start, init + c0 + r * lanes, sizeof(V));
#pragma GCC unroll 8
    for (int p = 0; p < pixels; ++p) sum[p][r] = start;
  }
  for (index_t t = 0; t < terms; ++t) {
#pragma GCC unroll 8
    for (int r = 0; r < registers; ++r) {
      V b_t;
      std::memcpy(&b_t, b[t] + c0 + r * lanes, sizeof(V));
#pragma GCC unroll 8
      for (int p = 0; p < pixels; ++p) {
        V a_t;
        std::memcpy(&a_t, a[t] + p * a_step + c0 + r * lanes, sizeof(V));
        sum[p][r] += a_t * b_t;
      }
    }
  }
#pragma GCC unroll 8
  for (int p = 0; p < pixels; ++p)
#pragma GCC unroll 8
    for (int r = 0; r < registers; ++r)
      std::memcpy(out + p * out_step + c0 + r * lanes, &sum[p][r], sizeof(V));
}

// out[p*out_step + c] = init[c] + sum_{t < terms} a[t][p*a_step + c] * b[t][c] for
// p < pixels (1 or 4) and c < channels (init may be null: zero). Blocks of 8 registers of
// sums (8 independent chains of fused multiply-adds keep both FMA units busy), then at most
// one block of half that, then single registers, then the last channels one at a time.
template <int pixels, typename T>
void sum_of_products(index_t terms, const T* const* a, index_t a_step, const T* const* b,
                     const T* init, index_t channels, T* out, index_t out_step) {
  constexpr index_t lanes = kLanes<T>;
  constexpr int registers = 8 / pixels;  // 8 sums in registers: 1 pixel x 8, or 4 x 2
  constexpr int half = registers / 2;
  index_t c0 = 0;
  for (; c0 + registers * lanes <= channels; c0 += registers * lanes)
    sum_of_products_block<pixels, registers>(terms, a, a_step, b, init, c0, out, out_step);
  if (c0 + half * lanes <= channels) {
    sum_of_products_block<pixels, half>(terms, a, a_step, b, init, c0, out, out_step);
    c0 += half * lanes;
  }
  for (; c0 + lanes <= channels; c0 += lanes)
    sum_of_products_block<pixels, 1>(terms, a, a_step, b, init, c0, out, out_step);
  for (; c0 < channels; ++c0)
    for (int p = 0; p < pixels; ++p) {
      T sum = init ? init[c0] : T(0);
      for (index_t t = 0; t < terms; ++t) sum += a[t][p * a_step + c0] * b[t][c0];
      out[p * out_step + c0] = sum;
    }
}

// The geometry of the same conv with every input channel repeated dm times and one filter
// per channel (see the file comment).
Conv2dGeometry one_filter_per_channel(const Conv2dGeometry& g) {
  Conv2dGeometry single = g;
  single.in_channels = g.out_channels;
  single.depth_multiplier = 1;
  return single;
}

// x_repeated[p, c*dm + m] = x[p, c] over all pixels p.
template <typename T>
std::unique_ptr<T[]> repeat_channels(const Conv2dGeometry& g, const T* x) {
  const index_t pixels = g.in_pixels(), channels = g.in_channels, dm = g.depth_multiplier;
  std::unique_ptr<T[]> repeated(new T[pixels * channels * dm]);
#pragma omp parallel for schedule(static) if (worth_parallel(pixels * channels * dm))
  for (index_t p = 0; p < pixels; ++p)
    for (index_t c = 0; c < channels; ++c)
      for (index_t m = 0; m < dm; ++m)
        repeated[(p * channels + c) * dm + m] = x[p * channels + c];
  return repeated;
}

// ---- the three passes with one filter per channel (g.depth_multiplier == 1) ----

template <typename T>
void forward_one_filter_per_channel(const Conv2dGeometry& g, const T* x, const T* kernel,
                                    const T* bias, T* y) {
  const index_t channels = g.in_channels;
  const index_t rows = g.batch * g.out_height;
  const index_t work = g.out_pixels() * channels * g.kernel_height * g.kernel_width;

#pragma omp parallel if (worth_parallel(work))
  {
    // The (input pixel, kernel tap) pairs of one output pixel.
    std::vector<const T*> inputs(g.kernel_height * g.kernel_width);
    std::vector<const T*> taps(g.kernel_height * g.kernel_width);
#pragma omp for schedule(static)
    for (index_t row = 0; row < rows; ++row) {
      const index_t n = row / g.out_height, oh = row % g.out_height;
      const T* image = x + n * g.in_height * g.in_width * channels;
      index_t kh_first, kh_last;
      taps_inside(oh, g.stride_h, g.pad_top, g.dilation_h, g.kernel_height, g.in_height,
                  &kh_first, &kh_last);
      for (index_t ow = 0; ow < g.out_width;) {
        index_t kw_first, kw_last;
        taps_inside(ow, g.stride_w, g.pad_left, g.dilation_w, g.kernel_width, g.in_width,
                    &kw_first, &kw_last);
        // With stride 1, four neighbours whose windows lie inside the input share every
        // kernel tap, and their input pixels are one pixel apart: one pass computes all four.
        bool four = g.stride_w == 1 && kw_first == 0 && kw_last == g.kernel_width &&
                    ow + 3 < g.out_width;
        if (four) {
          index_t last_first, last_last;  // the taps inside the input of pixel ow + 3
          taps_inside(ow + 3, g.stride_w, g.pad_left, g.dilation_w, g.kernel_width, g.in_width,
                      &last_first, &last_last);
          four = last_last == g.kernel_width;
        }
        index_t terms = 0;
        for (index_t kh = kh_first; kh < kh_last; ++kh)
          for (index_t kw = kw_first; kw < kw_last; ++kw) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
            const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
            inputs[terms] = image + (ih * g.in_width + iw) * channels;
            taps[terms] = kernel + (kh * g.kernel_width + kw) * channels;
            ++terms;
          }
        T* out = y + (row * g.out_width + ow) * channels;
        if (four) {
          sum_of_products<4>(terms, inputs.data(), g.stride_w * channels, taps.data(), bias,
                             channels, out, channels);
          ow += 4;
        } else {
          sum_of_products<1>(terms, inputs.data(), 0, taps.data(), bias, channels, out, 0);
          ow += 1;
        }
      }
    }
  }
}

template <typename T>
void backward_input_one_filter_per_channel(const Conv2dGeometry& g, const T* grad_y,
                                           const T* kernel, T* grad_x) {
  const index_t channels = g.in_channels;
  const CoveringWindows along_h = covering_windows(g.in_height, g.out_height, g.kernel_height,
                                                   g.stride_h, g.pad_top, g.dilation_h);
  const CoveringWindows along_w = covering_windows(g.in_width, g.out_width, g.kernel_width,
                                                   g.stride_w, g.pad_left, g.dilation_w);
  const index_t rows = g.batch * g.in_height;
  const index_t work = g.out_pixels() * channels * g.kernel_height * g.kernel_width;

#pragma omp parallel if (worth_parallel(work))
  {
    // The (grad_y pixel, kernel tap) pairs that read one input pixel.
    std::vector<const T*> grads(g.kernel_height * g.kernel_width);
    std::vector<const T*> taps(g.kernel_height * g.kernel_width);
#pragma omp for schedule(static)
    for (index_t row = 0; row < rows; ++row) {
      const index_t n = row / g.in_height, ih = row % g.in_height;
      const T* grad_image = grad_y + n * g.out_height * g.out_width * channels;
      for (index_t iw = 0; iw < g.in_width;) {
        // With stride 1, four neighbours that each collect all kernel_width columns of taps
        // list the same taps in the same order, and their grad_y pixels are one pixel
        // apart: one pass computes all four (as in the forward).
        bool four = g.stride_w == 1 && iw + 3 < g.in_width;
        for (index_t p = 0; four && p < 4; ++p) four = along_w.count[iw + p] == g.kernel_width;
        index_t terms = 0;
        for (index_t a = 0; a < along_h.count[ih]; ++a) {
          const index_t oh = along_h.output[ih * along_h.kernel + a];
          const index_t kh = along_h.tap[ih * along_h.kernel + a];
          for (index_t b = 0; b < along_w.count[iw]; ++b) {
            const index_t ow = along_w.output[iw * along_w.kernel + b];
            const index_t kw = along_w.tap[iw * along_w.kernel + b];
            grads[terms] = grad_image + (oh * g.out_width + ow) * channels;
            taps[terms] = kernel + (kh * g.kernel_width + kw) * channels;
            ++terms;
          }
        }
        T* grad_in = grad_x + (row * g.in_width + iw) * channels;
        if (four) {
          sum_of_products<4>(terms, grads.data(), channels, taps.data(),
                             static_cast<const T*>(nullptr), channels, grad_in, channels);
          iw += 4;
        } else {
          sum_of_products<1>(terms, grads.data(), 0, taps.data(), static_cast<const T*>(nullptr),
                             channels, grad_in, 0);
          iw += 1;
        }
      }
    }
  }
}

// One output row's contribution to a 3x3 kernel's gradient, for channels
// [c0, c0 + B*lanes): the nine tap sums of the block stay in 9*B registers over the whole
// row (a multiply-add costs one load of x, where adding into row_sum cost three memory
// operations), and are written into row_sum (zero on entry) at the end.
template <typename T, int B>
void kernel_gradient_row_3x3(const Conv2dGeometry& g, const T* image, const T* grad_row, index_t oh,
                             index_t kh_first, index_t kh_last, index_t c0, T* row_sum) {
  using V = Vec<T>;
  constexpr index_t W = kLanes<T>;
  const index_t channels = g.in_channels;
  V acc[9][B];
  for (int t = 0; t < 9; ++t)
    for (int b = 0; b < B; ++b) acc[t][b] = V{};
  for (index_t ow = 0; ow < g.out_width; ++ow) {
    index_t kw_first, kw_last;
    taps_inside(ow, g.stride_w, g.pad_left, g.dilation_w, 3, g.in_width, &kw_first, &kw_last);
    V dy[B];
    for (int b = 0; b < B; ++b) std::memcpy(&dy[b], grad_row + ow * channels + c0 + b * W, sizeof(V));
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh) {
      if (kh < kh_first || kh >= kh_last) continue;
      const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
#pragma GCC unroll 3
      for (int kw = 0; kw < 3; ++kw) {
        if (kw < kw_first || kw >= kw_last) continue;
        const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
        const T* in = image + (ih * g.in_width + iw) * channels + c0;
        for (int b = 0; b < B; ++b) {
          V v;
          std::memcpy(&v, in + b * W, sizeof(V));
          acc[kh * 3 + kw][b] += v * dy[b];
        }
      }
    }
  }
  for (int t = 0; t < 9; ++t)
    for (int b = 0; b < B; ++b) std::memcpy(row_sum + t * channels + c0 + b * W, &acc[t][b], sizeof(V));
}

template <typename T>
void backward_kernel_one_filter_per_channel(const Conv2dGeometry& g, const T* x,
                                            const T* grad_y, T* grad_kernel) {
  const index_t channels = g.in_channels;
  const index_t kernel_size = g.kernel_height * g.kernel_width * channels;
  const index_t rows = g.batch * g.out_height;
  const index_t work = g.out_pixels() * kernel_size;
  const int threads = worth_parallel(work) ? omp_get_max_threads() : 1;
  // One double copy of grad_kernel per thread; added in thread order at the end, so the
  // result does not depend on scheduling, only on the thread count.
  std::vector<double> partial(static_cast<size_t>(threads) * kernel_size, 0.0);

#pragma omp parallel num_threads(threads)
  {
    double* sum = partial.data() + static_cast<size_t>(omp_get_thread_num()) * kernel_size;
    std::vector<T> row_sum(kernel_size);
#pragma omp for schedule(static)
    for (index_t row = 0; row < rows; ++row) {
      const index_t n = row / g.out_height, oh = row % g.out_height;
      const T* image = x + n * g.in_height * g.in_width * channels;
      index_t kh_first, kh_last;
      taps_inside(oh, g.stride_h, g.pad_top, g.dilation_h, g.kernel_height, g.in_height,
                  &kh_first, &kh_last);
      std::fill(row_sum.begin(), row_sum.end(), T(0));
      // 3x3 kernels: blocks of channels with the nine tap sums in registers.
      index_t c_done = 0;
      if (g.kernel_height == 3 && g.kernel_width == 3) {
        const T* grad_row = grad_y + row * g.out_width * channels;
        for (; c_done + 2 * kLanes<T> <= channels; c_done += 2 * kLanes<T>)
          kernel_gradient_row_3x3<T, 2>(g, image, grad_row, oh, kh_first, kh_last, c_done, row_sum.data());
        for (; c_done + kLanes<T> <= channels; c_done += kLanes<T>)
          kernel_gradient_row_3x3<T, 1>(g, image, grad_row, oh, kh_first, kh_last, c_done, row_sum.data());
      }
      if (c_done < channels) {
        for (index_t ow = 0; ow < g.out_width; ++ow) {
          const T* __restrict grad_out = grad_y + (row * g.out_width + ow) * channels;
          index_t kw_first, kw_last;
          taps_inside(ow, g.stride_w, g.pad_left, g.dilation_w, g.kernel_width, g.in_width,
                      &kw_first, &kw_last);
          for (index_t kh = kh_first; kh < kh_last; ++kh)
            for (index_t kw = kw_first; kw < kw_last; ++kw) {
              const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
              const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
              const T* __restrict in = image + (ih * g.in_width + iw) * channels;
              T* __restrict tap_sum = row_sum.data() + (kh * g.kernel_width + kw) * channels;
#pragma omp simd
              for (index_t c = c_done; c < channels; ++c) tap_sum[c] += in[c] * grad_out[c];
            }
        }
      }
      const T* row_values = row_sum.data();
#pragma omp simd
      for (index_t i = 0; i < kernel_size; ++i) sum[i] += static_cast<double>(row_values[i]);
    }
  }

#pragma omp parallel for schedule(static) if (worth_parallel(threads * kernel_size))
  for (index_t i = 0; i < kernel_size; ++i) {
    double total = 0.0;
    for (int t = 0; t < threads; ++t) total += partial[static_cast<size_t>(t) * kernel_size + i];
    grad_kernel[i] = static_cast<T>(total);
  }
}

}  // namespace

template <typename T>
void depthwise_conv2d_forward(const Conv2dGeometry& g, const T* x, const T* kernel,
                              const T* bias, T* y) {
  if (g.depth_multiplier == 1) return forward_one_filter_per_channel(g, x, kernel, bias, y);
  const std::unique_ptr<T[]> x_repeated = repeat_channels(g, x);
  forward_one_filter_per_channel(one_filter_per_channel(g), x_repeated.get(), kernel, bias, y);
}

template <typename T>
void depthwise_conv2d_backward_input(const Conv2dGeometry& g, const T* grad_y, const T* kernel,
                                     T* grad_x) {
  if (g.depth_multiplier == 1)
    return backward_input_one_filter_per_channel(g, grad_y, kernel, grad_x);
  // The gradient of x_repeated, then each channel's dm copies summed.
  const index_t pixels = g.in_pixels(), channels = g.in_channels, dm = g.depth_multiplier;
  std::unique_ptr<T[]> grad_repeated(new T[pixels * channels * dm]);
  backward_input_one_filter_per_channel(one_filter_per_channel(g), grad_y, kernel,
                                        grad_repeated.get());
#pragma omp parallel for schedule(static) if (worth_parallel(pixels * channels * dm))
  for (index_t p = 0; p < pixels; ++p)
    for (index_t c = 0; c < channels; ++c) {
      T sum = 0;
      for (index_t m = 0; m < dm; ++m) sum += grad_repeated[(p * channels + c) * dm + m];
      grad_x[p * channels + c] = sum;
    }
}

template <typename T>
void depthwise_conv2d_backward_kernel(const Conv2dGeometry& g, const T* x, const T* grad_y,
                                      T* grad_kernel) {
  if (g.depth_multiplier == 1)
    return backward_kernel_one_filter_per_channel(g, x, grad_y, grad_kernel);
  const std::unique_ptr<T[]> x_repeated = repeat_channels(g, x);
  backward_kernel_one_filter_per_channel(one_filter_per_channel(g), x_repeated.get(), grad_y,
                                         grad_kernel);
}

template void depthwise_conv2d_forward<float>(const Conv2dGeometry&, const float*, const float*,
                                              const float*, float*);
template void depthwise_conv2d_forward<double>(const Conv2dGeometry&, const double*,
                                               const double*, const double*, double*);
template void depthwise_conv2d_backward_input<float>(const Conv2dGeometry&, const float*,
                                                     const float*, float*);
template void depthwise_conv2d_backward_input<double>(const Conv2dGeometry&, const double*,
                                                      const double*, double*);
template void depthwise_conv2d_backward_kernel<float>(const Conv2dGeometry&, const float*,
                                                      const float*, float*);
template void depthwise_conv2d_backward_kernel<double>(const Conv2dGeometry&, const double*,
                                                       const double*, double*);

}  // namespace convlab::cpu
