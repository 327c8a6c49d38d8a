// Pooling on the CPU: max, average and global average pooling, forward and backward.
// NHWC; the channels pass through unchanged (g.out_channels == g.in_channels = C).
//
//   x  (batch, in_height,  in_width,  C)
//   y  (batch, out_height, out_width, C)
//
// Index math (common/geometry.h, with dilation 1 for pooling): output pixel (oh, ow) and
// window tap (kh, kw) look at input pixel
//     ih = oh*stride_h - pad_top  + kh*dilation_h
//     iw = ow*stride_w - pad_left + kw*dilation_w
// and taps outside the input are skipped (padding never wins a max, never counts in an
// average). Over the taps inside the input:
//   max:  y[n, oh, ow, c] = the first maximum of x[n, ih, iw, c] in row-major tap order
//         (kh outer, kw inner), or the first NaN if the window holds one. The backward
//         pass sends all of grad_y[n, oh, ow, c] to that one input cell.
//   avg:  y[n, oh, ow, c] = sum x[n, ih, iw, c] / (number of taps inside), as Keras does;
//         the backward pass spreads grad_y / count over the same cells.
//   A window with no tap inside the input (possible only with explicit padding at least
//   as large as the window) outputs 0 and passes no gradient.
// Global average pooling: x viewed as (batch, pixels, C) -> y (batch, C), the mean over
// pixels; its backward spreads grad_y / pixels.
//
// Loop order. Pooling does one compare or add per tap per element, so it is bound by
// memory: each pass reads its inputs once and writes its output once, with the innermost
// loop over the contiguous channels of one pixel (vectorized).
//   forward          the output rows (n, oh) are split among the threads.
//   backward         a gather, not a scatter: the input rows (n, ih) are split among the
//                    threads, and each input pixel adds the gradients of the (output
//                    pixel, tap) pairs that look at it, found from the per-axis tables of
//                    covering_windows(). When windows overlap (3x3 stride 2) a scatter
//                    would race; the gather has exactly one writer per grad_x element,
//                    needs no zero-fill pass, and sums in an order independent of the
//                    thread count.
//   max backward     with disjoint windows (stride >= pool size), one pass: find each
//                    window's winners and write its gradient to them (see
//                    max_pool2d_backward_disjoint). Otherwise it first finds the winning tap of every (n, oh, ow, c) exactly as the
//                    forward does (one pass over x, writing a small int32 tap index per
//                    output element), then gathers: an input cell receives grad_y from a
//                    window only where that window's winner is the tap that reads it.
// Rows are the parallel unit, so batch 1 keeps both cores busy too.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "window.h"

namespace convlab::cpu {
namespace {

// The max pooling rule for one more candidate v against the running maximum m: take v if
// it is larger, or if it is NaN while m is not; once m is NaN it stays. Written without
// branches, as `!(v <= m)` (true for v > m and for NaN v), so the channel loops vectorize.
template <typename T>
inline bool replaces_max(T v, T m) {
  return m == m && !(v <= m);
}

// Max over one window for every channel: best[c] and the row-major index kh*kernel_width+kw
// of the tap that holds it (winner may be null when only the values are wanted).
template <typename T>
void max_over_window(const Conv2dGeometry& g, const T* image, index_t oh, index_t ow,
                     index_t kh_first, index_t kh_last, T* __restrict best,
                     std::int32_t* __restrict winner) {
  const index_t channels = g.in_channels;
  index_t kw_first, kw_last;
  taps_inside(ow, g.stride_w, g.pad_left, g.dilation_w, g.kernel_width, g.in_width, &kw_first,
              &kw_last);
  if (kh_first >= kh_last || kw_first >= kw_last) {
    std::fill(best, best + channels, T(0));
    if (winner) std::fill(winner, winner + channels, std::int32_t(-1));
    return;
  }
  const auto pixel = [&](index_t kh, index_t kw) {
    const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
    const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
    return image + (ih * g.in_width + iw) * channels;
  };
  // The first tap inside the input starts the running maximum, so a window of -inf (or
  // of NaN) still has a winner.
  std::copy(pixel(kh_first, kw_first), pixel(kh_first, kw_first) + channels, best);
  if (winner)
    std::fill(winner, winner + channels,
              static_cast<std::int32_t>(kh_first * g.kernel_width + kw_first));
  for (index_t kh = kh_first; kh < kh_last; ++kh)
    for (index_t kw = (kh == kh_first ? kw_first + 1 : kw_first); kw < kw_last; ++kw) {
      const T* __restrict in = pixel(kh, kw);
      if (winner) {
        const auto tap = static_cast<std::int32_t>(kh * g.kernel_width + kw);
#pragma omp simd
        for (index_t c = 0; c < channels; ++c) {
          const bool take = replaces_max(in[c], best[c]);
          best[c] = take ? in[c] : best[c];
          winner[c] = take ? tap : winner[c];
        }
      } else {
#pragma omp simd
        for (index_t c = 0; c < channels; ++c)
          best[c] = replaces_max(in[c], best[c]) ? in[c] : best[c];
      }
    }
}

}  // namespace

template <typename T>
void max_pool2d_forward(const Conv2dGeometry& g, const T* x, T* y) {
  const index_t channels = g.in_channels;
  const index_t rows = g.batch * g.out_height;
  const index_t work = g.out_pixels() * channels * g.kernel_height * g.kernel_width;

#pragma omp parallel for schedule(static) if (worth_parallel(work))
  for (index_t row = 0; row < rows; ++row) {
    const index_t n = row / g.out_height, oh = row % g.out_height;
    index_t kh_first, kh_last;
    taps_inside(oh, g.stride_h, g.pad_top, g.dilation_h, g.kernel_height, g.in_height,
                &kh_first, &kh_last);
    const T* image = x + n * g.in_height * g.in_width * channels;
    for (index_t ow = 0; ow < g.out_width; ++ow)
      max_over_window(g, image, oh, ow, kh_first, kh_last,
                      y + (row * g.out_width + ow) * channels, nullptr);
  }
}

namespace {

// Max pooling backward when no two windows overlap (stride >= pool size along both
// axes: the books' 2x2 stride 2): one pass. Output row oh owns the input rows from its
// window's first row up to the next window's first row (the first and last output rows
// also own the rows before and after every window), so each thread zeroes the rows it
// owns, finds each window's winners exactly as the forward does, and writes grad_y to
// them; no cell is written by two windows.
template <typename T>
void max_pool2d_backward_disjoint(const Conv2dGeometry& g, const T* x, const T* grad_y, T* grad_x,
                                  bool parallel) {
  const index_t channels = g.in_channels, row_elements = g.in_width * channels;
  const index_t out_rows = g.batch * g.out_height;
  // Input columns that no window reads (the gaps of a stride larger than the window, the
  // columns past the last window) get zeros; every other cell is written by its window.
  std::vector<char> column_read(std::size_t(g.in_width), 0);
  for (index_t ow = 0; ow < g.out_width; ++ow)
    for (index_t kw = 0; kw < g.kernel_width; ++kw) {
      const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
      if (iw >= 0 && iw < g.in_width) column_read[iw] = 1;
    }
#pragma omp parallel if (parallel)
  {
    std::vector<T> best(channels);
    std::vector<std::int32_t> winner(channels);
#pragma omp for schedule(static)
    for (index_t row = 0; row < out_rows; ++row) {
      const index_t n = row / g.out_height, oh = row % g.out_height;
      index_t kh_first, kh_last;
      taps_inside(oh, g.stride_h, g.pad_top, g.dilation_h, g.kernel_height, g.in_height,
                  &kh_first, &kh_last);
      const index_t first = oh == 0 ? 0 : std::clamp<index_t>(oh * g.stride_h - g.pad_top, 0, g.in_height);
      const index_t last = oh == g.out_height - 1
                               ? g.in_height
                               : std::clamp<index_t>((oh + 1) * g.stride_h - g.pad_top, 0, g.in_height);
      T* image_grad = grad_x + n * g.in_height * row_elements;
      for (index_t ih = first; ih < last; ++ih) {
        const index_t kh = ih + g.pad_top - oh * g.stride_h;  // dilation 1 for pooling
        T* out = image_grad + ih * row_elements;
        if (kh < kh_first || kh >= kh_last) {
          std::fill(out, out + row_elements, T(0));
        } else {
          for (index_t iw = 0; iw < g.in_width; ++iw)
            if (!column_read[iw]) std::fill(out + iw * channels, out + (iw + 1) * channels, T(0));
        }
      }
      const T* image = x + n * g.in_height * row_elements;
      for (index_t ow = 0; ow < g.out_width; ++ow) {
        max_over_window(g, image, oh, ow, kh_first, kh_last, best.data(), winner.data());
        index_t kw_first, kw_last;
        taps_inside(ow, g.stride_w, g.pad_left, g.dilation_w, g.kernel_width, g.in_width, &kw_first,
                    &kw_last);
        const T* __restrict dy = grad_y + (row * g.out_width + ow) * channels;
        const std::int32_t* __restrict won = winner.data();
        for (index_t kh = kh_first; kh < kh_last; ++kh)
          for (index_t kw = kw_first; kw < kw_last; ++kw) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh, iw = ow * g.stride_w - g.pad_left + kw;
            T* __restrict cell = image_grad + ih * row_elements + iw * channels;
            const auto tap = static_cast<std::int32_t>(kh * g.kernel_width + kw);
#pragma omp simd
            for (index_t c = 0; c < channels; ++c) cell[c] = won[c] == tap ? dy[c] : T(0);
          }
      }
    }
  }
}

}  // namespace

template <typename T>
void max_pool2d_backward(const Conv2dGeometry& g, const T* x, const T* grad_y, T* grad_x) {
  const index_t channels = g.in_channels;
  const index_t work = g.out_pixels() * channels * g.kernel_height * g.kernel_width;
  const bool parallel = worth_parallel(work);
  if (g.dilation_h == 1 && g.dilation_w == 1 && g.stride_h >= g.kernel_height &&
      g.stride_w >= g.kernel_width) {
    max_pool2d_backward_disjoint(g, x, grad_y, grad_x, parallel);
    return;
  }

  // Pass 1: the winning tap of every output element, found exactly as the forward does.
  std::unique_ptr<std::int32_t[]> winner(new std::int32_t[g.out_pixels() * channels]);
  const index_t out_rows = g.batch * g.out_height;
#pragma omp parallel if (parallel)
  {
    std::vector<T> best(channels);
#pragma omp for schedule(static)
    for (index_t row = 0; row < out_rows; ++row) {
      const index_t n = row / g.out_height, oh = row % g.out_height;
      index_t kh_first, kh_last;
      taps_inside(oh, g.stride_h, g.pad_top, g.dilation_h, g.kernel_height, g.in_height,
                  &kh_first, &kh_last);
      const T* image = x + n * g.in_height * g.in_width * channels;
      for (index_t ow = 0; ow < g.out_width; ++ow)
        max_over_window(g, image, oh, ow, kh_first, kh_last, best.data(),
                        winner.get() + (row * g.out_width + ow) * channels);
    }
  }

  // Pass 2: every input cell gathers grad_y from the windows it won.
  const CoveringWindows along_h = covering_windows(g.in_height, g.out_height, g.kernel_height,
                                                   g.stride_h, g.pad_top, g.dilation_h);
  const CoveringWindows along_w = covering_windows(g.in_width, g.out_width, g.kernel_width,
                                                   g.stride_w, g.pad_left, g.dilation_w);
  const index_t in_rows = g.batch * g.in_height;
#pragma omp parallel for schedule(static) if (parallel)
  for (index_t row = 0; row < in_rows; ++row) {
    const index_t n = row / g.in_height, ih = row % g.in_height;
    const index_t image_offset = n * g.out_height * g.out_width * channels;
    for (index_t iw = 0; iw < g.in_width; ++iw) {
      T* __restrict grad_in = grad_x + (row * g.in_width + iw) * channels;
      std::fill(grad_in, grad_in + channels, T(0));
      for (index_t a = 0; a < along_h.count[ih]; ++a) {
        const index_t oh = along_h.output[ih * along_h.kernel + a];
        const index_t kh = along_h.tap[ih * along_h.kernel + a];
        for (index_t b = 0; b < along_w.count[iw]; ++b) {
          const index_t ow = along_w.output[iw * along_w.kernel + b];
          const index_t kw = along_w.tap[iw * along_w.kernel + b];
          const auto tap = static_cast<std::int32_t>(kh * g.kernel_width + kw);
          const index_t offset = image_offset + (oh * g.out_width + ow) * channels;
          const T* __restrict grad_out = grad_y + offset;
          const std::int32_t* __restrict won = winner.get() + offset;
#pragma omp simd
          for (index_t c = 0; c < channels; ++c)
            grad_in[c] += won[c] == tap ? grad_out[c] : T(0);
        }
      }
    }
  }
}

template <typename T>
void avg_pool2d_forward(const Conv2dGeometry& g, const T* x, T* y) {
  const index_t channels = g.in_channels;
  const index_t rows = g.batch * g.out_height;
  const index_t work = g.out_pixels() * channels * g.kernel_height * g.kernel_width;

#pragma omp parallel if (worth_parallel(work))
  {
    std::vector<const T*> cells(g.kernel_height * g.kernel_width);  // of one window
#pragma omp for schedule(static)
    for (index_t row = 0; row < rows; ++row) {
      const index_t n = row / g.out_height, oh = row % g.out_height;
      index_t kh_first, kh_last;
      taps_inside(oh, g.stride_h, g.pad_top, g.dilation_h, g.kernel_height, g.in_height,
                  &kh_first, &kh_last);
      const T* image = x + n * g.in_height * g.in_width * channels;
      for (index_t ow = 0; ow < g.out_width; ++ow) {
        T* __restrict out = y + (row * g.out_width + ow) * channels;
        index_t kw_first, kw_last;
        taps_inside(ow, g.stride_w, g.pad_left, g.dilation_w, g.kernel_width, g.in_width,
                    &kw_first, &kw_last);
        index_t count = 0;
        for (index_t kh = kh_first; kh < kh_last; ++kh)
          for (index_t kw = kw_first; kw < kw_last; ++kw) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
            const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
            cells[count++] = image + (ih * g.in_width + iw) * channels;
          }
        if (count == 0) {
          std::fill(out, out + channels, T(0));
          continue;
        }
        // out = (cell 0 + cell 1 + ...) * (1 / count)
        const T* __restrict first = cells[0];
        std::copy(first, first + channels, out);
        for (index_t t = 1; t < count; ++t) {
          const T* __restrict in = cells[t];
#pragma omp simd
          for (index_t c = 0; c < channels; ++c) out[c] += in[c];
        }
        const T scale = T(1) / static_cast<T>(count);
#pragma omp simd
        for (index_t c = 0; c < channels; ++c) out[c] *= scale;
      }
    }
  }
}

template <typename T>
void avg_pool2d_backward(const Conv2dGeometry& g, const T* grad_y, T* grad_x) {
  const index_t channels = g.in_channels;
  const index_t work = g.out_pixels() * channels * g.kernel_height * g.kernel_width;

  // A window's cell count factors into (taps inside along h) * (taps inside along w).
  std::vector<index_t> inside_h(g.out_height), inside_w(g.out_width);
  for (index_t oh = 0; oh < g.out_height; ++oh) {
    index_t first, last;
    taps_inside(oh, g.stride_h, g.pad_top, g.dilation_h, g.kernel_height, g.in_height, &first,
                &last);
    inside_h[oh] = std::max<index_t>(last - first, 0);
  }
  for (index_t ow = 0; ow < g.out_width; ++ow) {
    index_t first, last;
    taps_inside(ow, g.stride_w, g.pad_left, g.dilation_w, g.kernel_width, g.in_width, &first,
                &last);
    inside_w[ow] = std::max<index_t>(last - first, 0);
  }
  const CoveringWindows along_h = covering_windows(g.in_height, g.out_height, g.kernel_height,
                                                   g.stride_h, g.pad_top, g.dilation_h);
  const CoveringWindows along_w = covering_windows(g.in_width, g.out_width, g.kernel_width,
                                                   g.stride_w, g.pad_left, g.dilation_w);
  const index_t rows = g.batch * g.in_height;

#pragma omp parallel for schedule(static) if (worth_parallel(work))
  for (index_t row = 0; row < rows; ++row) {
    const index_t n = row / g.in_height, ih = row % g.in_height;
    const T* grad_image = grad_y + n * g.out_height * g.out_width * channels;
    for (index_t iw = 0; iw < g.in_width; ++iw) {
      T* __restrict grad_in = grad_x + (row * g.in_width + iw) * channels;
      std::fill(grad_in, grad_in + channels, T(0));
      for (index_t a = 0; a < along_h.count[ih]; ++a) {
        const index_t oh = along_h.output[ih * along_h.kernel + a];
        for (index_t b = 0; b < along_w.count[iw]; ++b) {
          const index_t ow = along_w.output[iw * along_w.kernel + b];
          // A cell covered by a window has count >= 1: it is one of the cells counted.
          const T scale = T(1) / static_cast<T>(inside_h[oh] * inside_w[ow]);
          const T* __restrict grad_out = grad_image + (oh * g.out_width + ow) * channels;
#pragma omp simd
          for (index_t c = 0; c < channels; ++c) grad_in[c] += grad_out[c] * scale;
        }
      }
    }
  }
}

// The mean over pixels, one image at a time. Threads split (image, block of channels), so
// batch 1 with many channels (the 7x7x2048 head of a ResNet) still uses every core; the
// sum runs in double for float inputs, as a 7x7 or 56x56 mean is a long sum.
template <typename T>
void global_avg_pool2d_forward(index_t batch, index_t pixels, index_t channels, const T* x,
                               T* y) {
  constexpr index_t kBlock = 256;  // channels per task: 1-2 KiB of each pixel row
  const index_t blocks = (channels + kBlock - 1) / kBlock;
  const double inverse_pixels = 1.0 / static_cast<double>(pixels);
  const bool parallel = worth_parallel(batch * pixels * channels);

#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (index_t n = 0; n < batch; ++n)
    for (index_t block = 0; block < blocks; ++block) {
      const index_t c0 = block * kBlock, width = std::min(kBlock, channels - c0);
      double sum[kBlock];
      std::fill(sum, sum + width, 0.0);
      for (index_t p = 0; p < pixels; ++p) {
        const T* __restrict in = x + (n * pixels + p) * channels + c0;
#pragma omp simd
        for (index_t c = 0; c < width; ++c) sum[c] += static_cast<double>(in[c]);
      }
      T* out = y + n * channels + c0;
      for (index_t c = 0; c < width; ++c) out[c] = static_cast<T>(sum[c] * inverse_pixels);
    }
}

template <typename T>
void global_avg_pool2d_backward(index_t batch, index_t pixels, index_t channels,
                                const T* grad_y, T* grad_x) {
  const T scale = static_cast<T>(1.0 / static_cast<double>(pixels));
  const index_t rows = batch * pixels;

#pragma omp parallel for schedule(static) if (worth_parallel(rows * channels))
  for (index_t row = 0; row < rows; ++row) {
    const T* __restrict grad_out = grad_y + (row / pixels) * channels;
    T* __restrict grad_in = grad_x + row * channels;
#pragma omp simd
    for (index_t c = 0; c < channels; ++c) grad_in[c] = grad_out[c] * scale;
  }
}

template void max_pool2d_forward<float>(const Conv2dGeometry&, const float*, float*);
template void max_pool2d_forward<double>(const Conv2dGeometry&, const double*, double*);
template void max_pool2d_backward<float>(const Conv2dGeometry&, const float*, const float*,
                                         float*);
template void max_pool2d_backward<double>(const Conv2dGeometry&, const double*, const double*,
                                          double*);
template void avg_pool2d_forward<float>(const Conv2dGeometry&, const float*, float*);
template void avg_pool2d_forward<double>(const Conv2dGeometry&, const double*, double*);
template void avg_pool2d_backward<float>(const Conv2dGeometry&, const float*, float*);
template void avg_pool2d_backward<double>(const Conv2dGeometry&, const double*, double*);
template void global_avg_pool2d_forward<float>(index_t, index_t, index_t, const float*, float*);
template void global_avg_pool2d_forward<double>(index_t, index_t, index_t, const double*,
                                                double*);
template void global_avg_pool2d_backward<float>(index_t, index_t, index_t, const float*,
                                                float*);
template void global_avg_pool2d_backward<double>(index_t, index_t, index_t, const double*,
                                                 double*);

}  // namespace convlab::cpu
