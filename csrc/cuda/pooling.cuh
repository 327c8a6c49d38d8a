// Pooling on the GPU: max, average and global average pooling, forward and backward.
// The CPU twin (cpu/pooling.cpp) is the oracle; its header states the rules repeated here.
// NHWC; the channels pass through unchanged (g.out_channels == g.in_channels = C).
//
//   x  (batch, in_height,  in_width,  C)        y  (batch, out_height, out_width, C)
//
// Index math (common/geometry.h): output pixel (oh, ow) and window tap (kh, kw) read
//     ih = oh*stride_h - pad_top  + kh*dilation_h        (dilation is 1 for pooling)
//     iw = ow*stride_w - pad_left + kw*dilation_w
// and taps outside the input are skipped. Over the taps inside:
//   max   y = the first maximum in row-major tap order (kh outer, kw inner), or the first
//         NaN if the window holds one; backward sends all of grad_y to that one cell;
//   avg   y = (sum of the cells, in tap order) * (1 / count), count = taps inside;
//         backward adds grad_y * (1 / count) to every cell of the window;
//   a window with no tap inside outputs 0 and passes no gradient.
// Both backward passes are gathers: one thread owns each grad_x element and adds the
// gradients of the windows that read it, ordered by oh then ow (the CPU's order), so
// overlapping windows (3x3 stride 2) need no atomics and the sums repeat bit for bit.
// Global average pooling: x viewed as (batch, pixels, C) -> y (batch, C), the mean over
// pixels summed in double; its backward spreads grad_y * (1 / pixels).
//
// Variants:
//   reference  one thread per output element in a grid-stride loop over the flat NHWC
//              index (decomposed with 64-bit divisions); every tap of every window is
//              tested against the input edges; max backward recomputes the winner of
//              each covering window. Written to be obviously right.
//   fast       a block is a (pixel slot, channel) grid: thread t takes channel
//              t % width and pixel slot t / width (width = min(C, 256), 256 threads),
//              so a warp reads consecutive channels of consecutive pixels (coalesced,
//              and few lanes idle when C is small); grid x covers the channel chunks,
//              grid y strides over the pixels; each thread keeps its channel, and the
//              window's inside taps are found once per pixel (no per-tap edge tests,
//              dilation 1 as pooling has). Max backward is two programs, as on the CPU:
//              the winning tap of every output element goes to an int32 workspace, then
//              the gather compares taps instead of recomputing K*K-tap windows.
//              Global average pooling: a block per (image, chunk of up to 32 channels),
//              its threads split the pixels into slots that sum in double, then one
//              thread per channel adds the slots in order (2 KiB shared). Its backward
//              is one coalesced element-wise loop, the same program in both variants.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "kernels.h"

namespace convlab::cuda {
namespace pooling_detail {

// The max pooling rule for one more candidate v against the running maximum m: take v if
// it is larger, or if it is NaN while m is not; once m is NaN it stays (as the CPU).
template <class T>
CONVLAB_HD bool replaces_max(T v, T m) {
  return m == m && !(v <= m);
}

// Taps [*first, *last) of one window axis that land inside the input:
// 0 <= o*stride - pad + k*dilation < in (cpu/window.h's taps_inside).
CONVLAB_HD void taps_inside(index_t o, index_t stride, index_t pad, index_t dilation,
                            index_t kernel, index_t in, index_t* first, index_t* last) {
  const index_t start = o * stride - pad;
  *first = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  const index_t end = start >= in ? 0 : (in - 1 - start) / dilation + 1;
  *last = end < kernel ? end : kernel;
}

// The fast programs' version of taps_inside for dilation 1 (pooling's): no division.
CONVLAB_HD void pool_taps_inside(index_t o, index_t stride, index_t pad, index_t kernel,
                                 index_t in, index_t* first, index_t* last) {
  const index_t start = o * stride - pad;
  *first = start >= 0 ? 0 : -start;
  const index_t end = in - start;
  *last = end < kernel ? end : kernel;
}

// Outputs [*first, *last) of one axis whose window covers input coordinate i (dilation
// 1): 0 <= i + pad - o*stride < kernel, the tap being i + pad - o*stride.
CONVLAB_HD void covering_outputs(index_t i, index_t stride, index_t pad, index_t kernel,
                                 index_t out, index_t* first, index_t* last) {
  const index_t high = i + pad;           // o*stride <= high
  const index_t low = high - (kernel - 1);  // o*stride >= low
  *first = low <= 0 ? 0 : (low + stride - 1) / stride;
  const index_t end = high < 0 ? 0 : high / stride + 1;
  *last = end < out ? end : out;
}

// The fast variants' block layout: thread t works on channel (lane) t % width of pixel
// slot t / width, width = min(channels, threads); threads past slots*width idle.
struct PixelChannelLayout {
  index_t width, slots, lane, slot;
  CONVLAB_HD PixelChannelLayout(index_t channels, int threads, int t) {
    width = channels < threads ? channels : threads;
    slots = threads / width;
    lane = t % width;
    slot = t / width;
  }
  CONVLAB_HD bool active() const { return slot < slots; }
};

// Grid for PixelChannelLayout: x covers the chunks of `width` channels (at most C <
// 2^31 of them, so no loop), y runs over groups of `slots` pixels in a grid-stride loop
// (65535 blocks of 256 threads fill any GPU). One loop level, not two, keeps the 64-bit
// divisions of the pixel index from spilling the loop's state.
inline LaunchPlan plan_pixel_channel(index_t pixels, index_t channels) {
  LaunchPlan plan;
  plan.threads = 256;
  const index_t width = channels < plan.threads ? channels : plan.threads;
  const index_t slots = plan.threads / width;
  plan.grid_x = ceil_div(channels, width);
  const index_t groups = ceil_div(pixels, slots);
  plan.grid_y = groups < 1 ? 1 : (groups > kMaxGridYZ ? kMaxGridYZ : groups);
  return plan;
}

// Global average pooling's fast layout: up to 32 channels per block, pixel slots filling
// the other threads.
constexpr int kGlobalPoolThreads = 256;
constexpr index_t kGlobalPoolWidth = 32;

}  // namespace pooling_detail

// ============================================================================ reference

// y[n, oh, ow, c]: one thread per output element.
template <class T>
struct MaxPoolForwardReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  T* y;

  // The max over window (n, oh, ow) of channel c, every tap tested; *winner = its tap
  // kh*kernel_width + kw, or -1 (and 0 returned) if no tap is inside.
  static CONVLAB_HD T window_max(const Conv2dGeometry& g, const T* x, index_t n, index_t oh,
                                 index_t ow, index_t c, int* winner) {
    T best = T(0);
    *winner = -1;
    for (index_t kh = 0; kh < g.kernel_height; ++kh)
      for (index_t kw = 0; kw < g.kernel_width; ++kw) {
        const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
        const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
        if (ih < 0 || ih >= g.in_height || iw < 0 || iw >= g.in_width) continue;
        const T v = x[((n * g.in_height + ih) * g.in_width + iw) * g.in_channels + c];
        if (*winner < 0 || pooling_detail::replaces_max(v, best)) {
          best = v;
          *winner = static_cast<int>(kh * g.kernel_width + kw);
        }
      }
    return best;
  }

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t count = g.out_pixels() * g.in_channels;
      const index_t stride = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += stride) {
        const index_t c = i % g.in_channels, pixel = i / g.in_channels;
        const index_t ow = pixel % g.out_width, oh = (pixel / g.out_width) % g.out_height;
        const index_t n = pixel / (g.out_width * g.out_height);
        int winner;
        y[i] = window_max(g, x, n, oh, ow, c, &winner);
      }
    });
  }
};

// grad_x[n, ih, iw, c]: one thread per input element, adding grad_y of every window that
// covers the cell and whose recomputed winner is the tap that reads it.
template <class T>
struct MaxPoolBackwardReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  const T* grad_y;
  T* grad_x;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t count = g.in_pixels() * g.in_channels;
      const index_t stride = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += stride) {
        const index_t c = i % g.in_channels, pixel = i / g.in_channels;
        const index_t iw = pixel % g.in_width, ih = (pixel / g.in_width) % g.in_height;
        const index_t n = pixel / (g.in_width * g.in_height);
        T sum = T(0);
        for (index_t oh = 0; oh < g.out_height; ++oh)
          for (index_t ow = 0; ow < g.out_width; ++ow) {
            const index_t dh = ih - (oh * g.stride_h - g.pad_top);   // kh * dilation_h
            const index_t dw = iw - (ow * g.stride_w - g.pad_left);  // kw * dilation_w
            if (dh < 0 || dw < 0 || dh % g.dilation_h || dw % g.dilation_w) continue;
            const index_t kh = dh / g.dilation_h, kw = dw / g.dilation_w;
            if (kh >= g.kernel_height || kw >= g.kernel_width) continue;
            int winner;
            MaxPoolForwardReference<T>::window_max(g, x, n, oh, ow, c, &winner);
            if (winner == kh * g.kernel_width + kw)
              sum += grad_y[((n * g.out_height + oh) * g.out_width + ow) * g.in_channels + c];
          }
        grad_x[i] = sum;
      }
    });
  }
};

template <class T>
struct AvgPoolForwardReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  T* y;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t count = g.out_pixels() * g.in_channels;
      const index_t stride = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += stride) {
        const index_t c = i % g.in_channels, pixel = i / g.in_channels;
        const index_t ow = pixel % g.out_width, oh = (pixel / g.out_width) % g.out_height;
        const index_t n = pixel / (g.out_width * g.out_height);
        T sum = T(0);
        index_t cells = 0;
        for (index_t kh = 0; kh < g.kernel_height; ++kh)
          for (index_t kw = 0; kw < g.kernel_width; ++kw) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
            const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
            if (ih < 0 || ih >= g.in_height || iw < 0 || iw >= g.in_width) continue;
            const T v = x[((n * g.in_height + ih) * g.in_width + iw) * g.in_channels + c];
            sum = cells == 0 ? v : sum + v;  // the first cell starts the sum, as on the CPU
            ++cells;
          }
        y[i] = cells == 0 ? T(0) : sum * (T(1) / static_cast<T>(cells));
      }
    });
  }
};

template <class T>
struct AvgPoolBackwardReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* grad_y;
  T* grad_x;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t count = g.in_pixels() * g.in_channels;
      const index_t stride = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += stride) {
        const index_t c = i % g.in_channels, pixel = i / g.in_channels;
        const index_t iw = pixel % g.in_width, ih = (pixel / g.in_width) % g.in_height;
        const index_t n = pixel / (g.in_width * g.in_height);
        T sum = T(0);
        for (index_t oh = 0; oh < g.out_height; ++oh)
          for (index_t ow = 0; ow < g.out_width; ++ow) {
            const index_t dh = ih - (oh * g.stride_h - g.pad_top);
            const index_t dw = iw - (ow * g.stride_w - g.pad_left);
            if (dh < 0 || dw < 0 || dh % g.dilation_h || dw % g.dilation_w) continue;
            if (dh / g.dilation_h >= g.kernel_height || dw / g.dilation_w >= g.kernel_width)
              continue;
            index_t h0, h1, w0, w1;  // the window's cell count
            pooling_detail::taps_inside(oh, g.stride_h, g.pad_top, g.dilation_h,
                                        g.kernel_height, g.in_height, &h0, &h1);
            pooling_detail::taps_inside(ow, g.stride_w, g.pad_left, g.dilation_w,
                                        g.kernel_width, g.in_width, &w0, &w1);
            const T scale = T(1) / static_cast<T>((h1 - h0) * (w1 - w0));
            sum += grad_y[((n * g.out_height + oh) * g.out_width + ow) * g.in_channels + c] *
                   scale;
          }
        grad_x[i] = sum;
      }
    });
  }
};

// y[n, c] = (sum over pixels of x[n, p, c], in double) * (1 / pixels).
template <class T>
struct GlobalAvgPoolForwardReference {
  static constexpr int kMaxThreads = 256;
  index_t batch, pixels, channels;
  const T* x;
  T* y;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t stride = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < batch * channels; i += stride) {
        const index_t n = i / channels, c = i % channels;
        double sum = 0.0;
        for (index_t p = 0; p < pixels; ++p)
          sum += static_cast<double>(x[(n * pixels + p) * channels + c]);
        y[i] = static_cast<T>(sum * (1.0 / static_cast<double>(pixels)));
      }
    });
  }
};

// grad_x[n, p, c] = grad_y[n, c] * (1 / pixels). Both variants: a coalesced element-wise
// loop is all this needs.
template <class T>
struct GlobalAvgPoolBackward {
  static constexpr int kMaxThreads = 256;
  index_t batch, pixels, channels;
  const T* grad_y;
  T* grad_x;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const T scale = static_cast<T>(1.0 / static_cast<double>(pixels));
      const index_t count = batch * pixels * channels;
      const index_t stride = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += stride) {
        const index_t c = i % channels, n = i / (pixels * channels);
        grad_x[i] = grad_y[n * channels + c] * scale;
      }
    });
  }
};

// ============================================================================ fast

// Max over windows with the inside taps found once per pixel. Writes y (the forward) or
// winner (the winning tap kh*kernel_width + kw per output element, -1 for a window with no
// tap inside: the first program of the backward); the other pointer is null.
template <class T>
struct MaxPoolForwardFast {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  T* y;
  std::int32_t* winner;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    // Race-free: each (pixel, channel) output is written by the one thread that owns it.
    ex.each([&](int t) {
      const pooling_detail::PixelChannelLayout at(g.in_channels, ex.threads(), t);
      if (!at.active()) return;
      const index_t C = g.in_channels, pixels = g.out_pixels();
      const index_t c = ex.block_x() * at.width + at.lane;  // the grid covers every chunk
      if (c >= C) return;
      for (index_t p = ex.block_y() * at.slots + at.slot; p < pixels;
           p += ex.grid_y() * at.slots) {
        const index_t row = p / g.out_width, ow = p - row * g.out_width;
        const index_t n = row / g.out_height, oh = row - n * g.out_height;
        index_t kh0, kh1, kw0, kw1;
        pooling_detail::pool_taps_inside(oh, g.stride_h, g.pad_top, g.kernel_height,
                                         g.in_height, &kh0, &kh1);
        pooling_detail::pool_taps_inside(ow, g.stride_w, g.pad_left, g.kernel_width,
                                         g.in_width, &kw0, &kw1);
        T best = T(0);
        index_t tap = -1;
        if (kh0 < kh1 && kw0 < kw1) {
          const index_t ih0 = oh * g.stride_h - g.pad_top, iw0 = ow * g.stride_w - g.pad_left;
          const T* image = x + n * g.in_height * g.in_width * C + c;
          best = image[((ih0 + kh0) * g.in_width + iw0 + kw0) * C];
          tap = kh0 * g.kernel_width + kw0;
          for (index_t kh = kh0; kh < kh1; ++kh) {
            const T* image_row = image + (ih0 + kh) * g.in_width * C;
            for (index_t kw = kw0; kw < kw1; ++kw) {
              const T v = image_row[(iw0 + kw) * C];
              if (pooling_detail::replaces_max(v, best)) {
                best = v;
                tap = kh * g.kernel_width + kw;
              }
            }
          }
        }
        if (y) y[p * C + c] = best;
        if (winner) winner[p * C + c] = static_cast<std::int32_t>(tap);
      }
    });
  }
};

// The gather of max and average pooling's backward: grad_x[n, ih, iw, c] adds, for each
// window (oh, ow) covering the cell in the order oh then ow, grad_y where the stored winner
// is the cell's tap (max), or grad_y * (1 / count) (average, winner null).
template <class T>
struct PoolBackwardFast {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const std::int32_t* winner;  // max pooling; null for average pooling
  const T* grad_y;
  T* grad_x;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    // Race-free: a gather; each grad_x element is written by the one thread that owns it.
    ex.each([&](int t) {
      const pooling_detail::PixelChannelLayout at(g.in_channels, ex.threads(), t);
      if (!at.active()) return;
      const index_t C = g.in_channels, pixels = g.in_pixels();
      const index_t c = ex.block_x() * at.width + at.lane;  // the grid covers every chunk
      if (c >= C) return;
      for (index_t p = ex.block_y() * at.slots + at.slot; p < pixels;
           p += ex.grid_y() * at.slots) {
        const index_t row = p / g.in_width, iw = p - row * g.in_width;
        const index_t n = row / g.in_height, ih = row - n * g.in_height;
        index_t oh0, oh1, ow0, ow1;
        pooling_detail::covering_outputs(ih, g.stride_h, g.pad_top, g.kernel_height,
                                         g.out_height, &oh0, &oh1);
        pooling_detail::covering_outputs(iw, g.stride_w, g.pad_left, g.kernel_width,
                                         g.out_width, &ow0, &ow1);
        const T* grad_image = grad_y + n * g.out_height * g.out_width * C + c;
        const std::int32_t* won =
            winner ? winner + n * g.out_height * g.out_width * C + c : nullptr;
        T sum = T(0);
        for (index_t oh = oh0; oh < oh1; ++oh) {
          const index_t kh = ih + g.pad_top - oh * g.stride_h;
          index_t h0, h1;  // average pooling: the window's rows inside the input
          pooling_detail::pool_taps_inside(oh, g.stride_h, g.pad_top, g.kernel_height,
                                           g.in_height, &h0, &h1);
          for (index_t ow = ow0; ow < ow1; ++ow) {
            const index_t offset = (oh * g.out_width + ow) * C;
            if (winner) {
              const index_t tap = kh * g.kernel_width + iw + g.pad_left - ow * g.stride_w;
              if (won[offset] == tap) sum += grad_image[offset];
            } else {
              index_t w0, w1;
              pooling_detail::pool_taps_inside(ow, g.stride_w, g.pad_left, g.kernel_width,
                                               g.in_width, &w0, &w1);
              sum += grad_image[offset] * (T(1) / static_cast<T>((h1 - h0) * (w1 - w0)));
            }
          }
        }
        grad_x[p * C + c] = sum;
      }
    });
  }
};

template <class T>
struct AvgPoolForwardFast {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  T* y;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    // Race-free: each output element is written by the one thread that owns it.
    ex.each([&](int t) {
      const pooling_detail::PixelChannelLayout at(g.in_channels, ex.threads(), t);
      if (!at.active()) return;
      const index_t C = g.in_channels, pixels = g.out_pixels();
      const index_t c = ex.block_x() * at.width + at.lane;  // the grid covers every chunk
      if (c >= C) return;
      for (index_t p = ex.block_y() * at.slots + at.slot; p < pixels;
           p += ex.grid_y() * at.slots) {
        const index_t row = p / g.out_width, ow = p - row * g.out_width;
        const index_t n = row / g.out_height, oh = row - n * g.out_height;
        index_t kh0, kh1, kw0, kw1;
        pooling_detail::pool_taps_inside(oh, g.stride_h, g.pad_top, g.kernel_height,
                                         g.in_height, &kh0, &kh1);
        pooling_detail::pool_taps_inside(ow, g.stride_w, g.pad_left, g.kernel_width,
                                         g.in_width, &kw0, &kw1);
        T out = T(0);
        if (kh0 < kh1 && kw0 < kw1) {
          const index_t ih0 = oh * g.stride_h - g.pad_top, iw0 = ow * g.stride_w - g.pad_left;
          const T* image = x + n * g.in_height * g.in_width * C + c;
          T sum = T(0);
          bool first = true;  // the first cell starts the sum, as on the CPU
          for (index_t kh = kh0; kh < kh1; ++kh) {
            const T* image_row = image + (ih0 + kh) * g.in_width * C;
            for (index_t kw = kw0; kw < kw1; ++kw) {
              const T v = image_row[(iw0 + kw) * C];
              sum = first ? v : sum + v;
              first = false;
            }
          }
          out = sum * (T(1) / static_cast<T>((kh1 - kh0) * (kw1 - kw0)));
        }
        y[p * C + c] = out;
      }
    });
  }
};

// Block (channel chunk, image): thread t sums channel c0 + t % width over the pixels
// p = slot, slot + slots, ... in double; then one thread per channel adds the slots'
// sums in slot order. Shared: one double per thread.
template <class T>
struct GlobalAvgPoolForwardFast {
  static constexpr int kMaxThreads = pooling_detail::kGlobalPoolThreads;
  index_t batch, pixels, channels;
  const T* x;
  T* y;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    double* partial = ex.template shared<double>();
    const index_t width = channels < pooling_detail::kGlobalPoolWidth
                              ? channels : pooling_detail::kGlobalPoolWidth;
    const index_t slots = ex.threads() / width;
    const index_t c0 = ex.block_x() * width;  // the grid covers every chunk
    // n is the same for the whole block, so every thread meets the same barriers.
    for (index_t n = ex.block_y(); n < batch; n += ex.grid_y()) {
      // Phase 1: each thread writes only partial[t].
      ex.each([&](int t) {
        const index_t slot = t / width, c = c0 + t % width;
        double sum = 0.0;
        if (slot < slots && c < channels)
          for (index_t p = slot; p < pixels; p += slots)
            sum += static_cast<double>(x[(n * pixels + p) * channels + c]);
        partial[t] = sum;
      });
      ex.sync();
      // Phase 2: threads t < width read the slots (written before the barrier) and each
      // writes its own y element.
      ex.each([&](int t) {
        const index_t c = c0 + t;
        if (t >= width || c >= channels) return;
        double sum = 0.0;
        for (index_t slot = 0; slot < slots; ++slot) sum += partial[slot * width + t];
        y[n * channels + c] = static_cast<T>(sum * (1.0 / static_cast<double>(pixels)));
      });
      ex.sync();  // the next image's phase 1 overwrites partial
    }
  }
};

// ============================================================================ launchers

// The fast programs' window math assumes pooling's dilation of 1 (make_pool2d_geometry).
inline void require_pool_dilation_1(const Conv2dGeometry& g) {
  if (g.dilation_h != 1 || g.dilation_w != 1)
    throw std::invalid_argument("pooling: the fast kernels take dilation 1 (pool2d geometry)");
}

template <class Runner, class T>
void max_pool2d_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x, T* y) {
  if (variant == Variant::Reference) {
    run("max_pool2d_forward_reference", plan_grid_stride(g.out_pixels() * g.in_channels),
        MaxPoolForwardReference<T>{g, x, y});
    return;
  }
  require_pool_dilation_1(g);
  run("max_pool2d_forward_fast", pooling_detail::plan_pixel_channel(g.out_pixels(), g.in_channels),
      MaxPoolForwardFast<T>{g, x, y, nullptr});
}

template <class Runner, class T>
void max_pool2d_backward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                         const T* grad_y, T* grad_x) {
  if (variant == Variant::Reference) {
    run("max_pool2d_backward_reference", plan_grid_stride(g.in_pixels() * g.in_channels),
        MaxPoolBackwardReference<T>{g, x, grad_y, grad_x});
    return;
  }
  require_pool_dilation_1(g);
  auto* winner = static_cast<std::int32_t*>(
      run.workspace(sizeof(std::int32_t) * static_cast<std::size_t>(g.out_pixels() * g.in_channels)));
  run("max_pool2d_winner_fast", pooling_detail::plan_pixel_channel(g.out_pixels(), g.in_channels),
      MaxPoolForwardFast<T>{g, x, nullptr, winner});
  run("max_pool2d_backward_fast", pooling_detail::plan_pixel_channel(g.in_pixels(), g.in_channels),
      PoolBackwardFast<T>{g, winner, grad_y, grad_x});
}

template <class Runner, class T>
void avg_pool2d_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x, T* y) {
  if (variant == Variant::Reference) {
    run("avg_pool2d_forward_reference", plan_grid_stride(g.out_pixels() * g.in_channels),
        AvgPoolForwardReference<T>{g, x, y});
    return;
  }
  require_pool_dilation_1(g);
  run("avg_pool2d_forward_fast", pooling_detail::plan_pixel_channel(g.out_pixels(), g.in_channels),
      AvgPoolForwardFast<T>{g, x, y});
}

template <class Runner, class T>
void avg_pool2d_backward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* grad_y,
                         T* grad_x) {
  if (variant == Variant::Reference) {
    run("avg_pool2d_backward_reference", plan_grid_stride(g.in_pixels() * g.in_channels),
        AvgPoolBackwardReference<T>{g, grad_y, grad_x});
    return;
  }
  require_pool_dilation_1(g);
  run("avg_pool2d_backward_fast", pooling_detail::plan_pixel_channel(g.in_pixels(), g.in_channels),
      PoolBackwardFast<T>{g, nullptr, grad_y, grad_x});
}

// Global average pooling's fast grid: x over chunks of up to 32 channels, y over images
// (strided past 65535).
inline LaunchPlan plan_global_avg_pool(index_t batch, index_t channels) {
  LaunchPlan plan;
  plan.threads = pooling_detail::kGlobalPoolThreads;
  const index_t width = channels < pooling_detail::kGlobalPoolWidth
                            ? channels : pooling_detail::kGlobalPoolWidth;
  plan.grid_x = ceil_div(channels, width);
  plan.grid_y = batch > kMaxGridYZ ? kMaxGridYZ : batch;
  plan.shared_bytes = sizeof(double) * static_cast<std::size_t>(plan.threads);
  return plan;
}

template <class Runner, class T>
void global_avg_pool2d_forward(Runner& run, Variant variant, index_t batch, index_t pixels,
                               index_t channels, const T* x, T* y) {
  if (variant == Variant::Reference) {
    run("global_avg_pool2d_forward_reference", plan_grid_stride(batch * channels),
        GlobalAvgPoolForwardReference<T>{batch, pixels, channels, x, y});
    return;
  }
  run("global_avg_pool2d_forward_fast", plan_global_avg_pool(batch, channels),
      GlobalAvgPoolForwardFast<T>{batch, pixels, channels, x, y});
}

template <class Runner, class T>
void global_avg_pool2d_backward(Runner& run, Variant variant, index_t batch, index_t pixels,
                                index_t channels, const T* grad_y, T* grad_x) {
  // One program serves both variants: the flat element-wise loop is already coalesced.
  run(variant == Variant::Reference ? "global_avg_pool2d_backward_reference"
                                    : "global_avg_pool2d_backward_fast",
      plan_grid_stride(batch * pixels * channels),
      GlobalAvgPoolBackward<T>{batch, pixels, channels, grad_y, grad_x});
}

}  // namespace convlab::cuda
