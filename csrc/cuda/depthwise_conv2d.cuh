// Depthwise conv2d on the GPU: forward, gradient of the input, gradient of the kernel, as
// block programs (exec.h) that run on the GPU and, through the host executor, on the CPU.
// The CPU twin (cpu/depthwise_conv2d.cpp) is the oracle.
//
// Shapes (Keras layouts, C-contiguous; dm = depth_multiplier, OC = C*dm):
//   x       (N, H, W, C)            y, grad_y  (N, OH, OW, OC)
//   kernel  (KH, KW, C, dm)  = (KH, KW, OC) as it lies in memory     bias  (OC)
// Every input channel c is convolved on its own with dm filters; filter m of channel c
// writes output channel oc = c*dm + m, so output channel oc reads input channel oc / dm.
// Index math (common/geometry.h), stated once: output pixel (n, oh, ow) and tap (kh, kw)
// read input pixel
//   ih = oh*stride_h - pad_top  + kh*dilation_h
//   iw = ow*stride_w - pad_left + kw*dilation_w
// and taps outside [0, H) x [0, W) are skipped (they read zero; skipping them, as the CPU
// does, keeps an Inf or NaN in the kernel from turning padding into NaN):
//   y[n, oh, ow, oc]          = bias[oc] + sum_{kh, kw} x[n, ih, iw, oc/dm] * kernel[kh, kw, oc]
//   grad_x[n, ih, iw, c]      = sum over m of (sum over the (oh, kh), (ow, kw) that read
//                               (ih, iw) of grad_y[n, oh, ow, c*dm + m] * kernel[kh, kw, c*dm + m]);
//                               oh = (ih + pad_top - kh*dilation_h) / stride_h when that
//                               divides exactly and lands in [0, OH) (the same along w)
//   grad_kernel[kh, kw, oc]   = sum_{n, oh, ow} x[n, ih, iw, oc/dm] * grad_y[n, oh, ow, oc]
//
// A depthwise conv does only KH*KW multiply-adds per output element: its cost is moving
// data, not arithmetic. NHWC keeps the channels of a pixel contiguous, so every variant
// maps consecutive threads to consecutive channels (coalesced loads and stores).
//
// Variants:
//   reference  one thread per output element (grad_x element, grad_kernel element), direct
//              loops over the taps, 64-bit offsets, grid-stride. The input gradient is a
//              gather; the kernel gradient sums over (n, oh, ow) in order, in double.
//   fast       (default) shared-memory halo tiles. A block owns a tile of pixels of one
//              image times a chunk of 32 channels (one warp lane per channel). It loads the
//              input tile plus its halo for those channels into shared memory once (each
//              input value is then read from shared memory by up to KH*KW outputs instead
//              of from global memory KH*KW times), and the chunk's kernel taps next to it.
//              Tiles shrink for large strides and dilations so that shared memory stays
//              under 48 KiB; a geometry whose smallest tile does not fit runs the reference.
//     forward          tile of tile_h x tile_w (<= 8 x 8) output pixels x 32 output
//                      channels; warp r computes output row r, each thread 8 columns of
//                      one channel in registers.
//     backward input   a gather through grad_y in shared memory: tile of tile_h input rows
//                      x tile_w input columns taken every stride_w columns (one "phase" of
//                      the columns per block, so that each kernel column kw either reaches
//                      all of a thread's columns or none of them and their grad_y columns
//                      are consecutive) x 32 input channels; the dm filters of a channel are
//                      loaded one after another and summed as on the CPU.
//     backward kernel  deterministic two-program reduction: program 1 gives each block a
//                      fixed run of output-pixel tiles of its channel chunk and sums
//                      x * grad_y over them into partial[chunk][kh][kw][OC] (workspace;
//                      each (tap, channel) sum has one owner thread in shared memory),
//                      program 2 adds the runs in a fixed order, in double (its warps
//                      split the runs, then one thread adds the warp sums). No atomics.
#pragma once

#include <algorithm>
#include <cstddef>

#include "../common/hd.h"
#include "kernels.h"

namespace convlab::cuda {

namespace depthwise_detail {

// Channels per block in the fast variants: one warp, one lane per channel.
constexpr int kChannelChunk = 32;
// Output (or input) columns one thread keeps in registers in the fast forward and
// backward-input programs; a compile-time count so that the accumulators stay registers.
constexpr int kColumns = 8;
// At most this many warps per tile (one tile row each).
constexpr int kMaxTileRows = 8;

// floor(a / b) for b > 0 and any sign of a.
CONVLAB_HD index_t floor_div(index_t a, index_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

CONVLAB_HD index_t clamp_index(index_t v, index_t lo, index_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

CONVLAB_HD index_t min_index(index_t a, index_t b) { return a < b ? a : b; }

// Strides and dilations as ints for the tile-local arithmetic of the halo programs. A
// staged halo of rows = (tile_h-1)*stride_h + (KH-1)*dilation_h + 1 <= 384 rows bounds
// every step that is ever multiplied by a nonzero count; a step whose count is always 0
// (stride_h with tile_h = 1, dilation_h with KH = 1) is set to 0, so that no product
// of unused columns in an unrolled loop can overflow.
CONVLAB_HD void tile_steps(const Conv2dGeometry& g, int tile_h, int tile_w, int* sh, int* sw,
                           int* dh, int* dw) {
  *sh = tile_h > 1 ? int(g.stride_h) : 0;
  *sw = tile_w > 1 ? int(g.stride_w) : 0;
  *dh = g.kernel_height > 1 ? int(g.dilation_h) : 0;
  *dw = g.kernel_width > 1 ? int(g.dilation_w) : 0;
}

// The number of tiles of `tile` along `extent`.
inline index_t tiles_along(index_t extent, index_t tile) { return ceil_div(extent, tile); }

// A 2-D tile size and the shared memory a program needs for it; fits = false when even
// a 1 x 1 tile needs more than 48 KiB (the launcher then runs the reference).
struct TileShape {
  int tile_h = 1, tile_w = 1;
  int rows = 1, cols = 1;  // the staged region (input halo or grad_y halo)
  std::size_t shared_bytes = 0;
  bool fits = false;
};

// Shrinks a tile_h x tile_w tile (the larger side first) until `shape(th, tw)` fits in
// 48 KiB; shape returns the staged rows and columns and the extra elements (kernel taps,
// accumulators) for a candidate tile, and the staged region is rows x cols x 32 values.
template <class Shape>
TileShape fit_tile(int tile_h, int tile_w, std::size_t element_bytes, Shape shape) {
  // A staged side longer than this cannot fit even one row of the other side.
  const index_t longest = index_t(kMaxSharedBytes / (kChannelChunk * element_bytes));
  for (;;) {
    index_t rows, cols, extra;
    shape(tile_h, tile_w, &rows, &cols, &extra);
    if (rows <= longest && cols <= longest && extra <= longest * kChannelChunk) {
      const std::size_t bytes =
          std::size_t((rows * cols + extra) * kChannelChunk) * element_bytes;
      if (bytes <= kMaxSharedBytes) {
        TileShape s;
        s.tile_h = tile_h;
        s.tile_w = tile_w;
        s.rows = int(rows);
        s.cols = int(cols);
        s.shared_bytes = bytes;
        s.fits = true;
        return s;
      }
    }
    if (tile_h == 1 && tile_w == 1) return TileShape{};
    if (tile_w >= tile_h) --tile_w; else --tile_h;
  }
}

// The input region (halo included) that tile_h x tile_w output pixels read.
inline void input_halo(const Conv2dGeometry& g, int tile_h, int tile_w, index_t* rows,
                       index_t* cols) {
  const index_t limit = index_t(1) << 40;  // "too large": keeps the arithmetic below exact
  *rows = std::min(limit, (tile_h - 1) * std::min(g.stride_h, limit) +
                              std::min(g.dilated_kernel_height(), limit));
  *cols = std::min(limit, (tile_w - 1) * std::min(g.stride_w, limit) +
                              std::min(g.dilated_kernel_width(), limit));
}

// Blocks for a block-stride loop over `blocks` work items.
inline LaunchPlan plan_blocks(index_t blocks, int threads, std::size_t shared_bytes) {
  LaunchPlan plan;
  plan.grid_x = std::max<index_t>(1, std::min(blocks, kMaxGridX));
  plan.threads = threads;
  plan.shared_bytes = shared_bytes;
  return plan;
}

}  // namespace depthwise_detail

// ======================================================================== reference

// y: one thread per output element (n, oh, ow, oc).
template <class T>
struct DepthwiseForwardReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  const T* kernel;
  const T* bias;  // may be null
  T* y;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t OC = g.out_channels, total = g.out_pixels() * OC;
      for (index_t i = ex.block_x() * ex.threads() + t; i < total;
           i += ex.grid_x() * ex.threads()) {
        const index_t oc = i % OC, pixel = i / OC;
        const index_t ow = pixel % g.out_width, oh = (pixel / g.out_width) % g.out_height;
        const index_t n = pixel / (g.out_width * g.out_height);
        const index_t c = oc / g.depth_multiplier;
        T sum = bias ? bias[oc] : T(0);
        for (index_t kh = 0; kh < g.kernel_height; ++kh) {
          const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
          if (ih < 0 || ih >= g.in_height) continue;
          for (index_t kw = 0; kw < g.kernel_width; ++kw) {
            const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
            if (iw < 0 || iw >= g.in_width) continue;
            sum += x[((n * g.in_height + ih) * g.in_width + iw) * g.in_channels + c] *
                   kernel[(kh * g.kernel_width + kw) * OC + oc];
          }
        }
        y[i] = sum;
      }
    });
  }
};

// grad_x: one thread per input element (n, ih, iw, c), a gather over the (output pixel,
// tap) pairs that read it; taps in decreasing order, i.e. output pixels in increasing
// order, as the CPU lists them.
template <class T>
struct DepthwiseBackwardInputReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* grad_y;
  const T* kernel;
  T* grad_x;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t C = g.in_channels, OC = g.out_channels, dm = g.depth_multiplier;
      const index_t total = g.in_pixels() * C;
      for (index_t i = ex.block_x() * ex.threads() + t; i < total;
           i += ex.grid_x() * ex.threads()) {
        const index_t c = i % C, pixel = i / C;
        const index_t iw = pixel % g.in_width, ih = (pixel / g.in_width) % g.in_height;
        const index_t n = pixel / (g.in_width * g.in_height);
        T sum = 0;
        for (index_t m = 0; m < dm; ++m) {
          const index_t oc = c * dm + m;
          T filter_sum = 0;
          for (index_t kh = g.kernel_height - 1; kh >= 0; --kh) {
            const index_t rh = ih + g.pad_top - kh * g.dilation_h;
            if (rh < 0 || rh % g.stride_h != 0 || rh / g.stride_h >= g.out_height) continue;
            const index_t oh = rh / g.stride_h;
            for (index_t kw = g.kernel_width - 1; kw >= 0; --kw) {
              const index_t rw = iw + g.pad_left - kw * g.dilation_w;
              if (rw < 0 || rw % g.stride_w != 0 || rw / g.stride_w >= g.out_width) continue;
              const index_t ow = rw / g.stride_w;
              filter_sum += grad_y[((n * g.out_height + oh) * g.out_width + ow) * OC + oc] *
                            kernel[(kh * g.kernel_width + kw) * OC + oc];
            }
          }
          sum += filter_sum;
        }
        grad_x[i] = sum;
      }
    });
  }
};

// grad_kernel: one thread per kernel element (kh, kw, oc), summing over (n, oh, ow) in
// order, in double.
template <class T>
struct DepthwiseBackwardKernelReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  const T* grad_y;
  T* grad_kernel;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t OC = g.out_channels;
      const index_t total = g.kernel_height * g.kernel_width * OC;
      for (index_t i = ex.block_x() * ex.threads() + t; i < total;
           i += ex.grid_x() * ex.threads()) {
        const index_t oc = i % OC, tap = i / OC;
        const index_t kh = tap / g.kernel_width, kw = tap % g.kernel_width;
        const index_t c = oc / g.depth_multiplier;
        double sum = 0;
        for (index_t n = 0; n < g.batch; ++n)
          for (index_t oh = 0; oh < g.out_height; ++oh) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
            if (ih < 0 || ih >= g.in_height) continue;
            for (index_t ow = 0; ow < g.out_width; ++ow) {
              const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
              if (iw < 0 || iw >= g.in_width) continue;
              sum += double(x[((n * g.in_height + ih) * g.in_width + iw) * g.in_channels + c]) *
                     double(grad_y[((n * g.out_height + oh) * g.out_width + ow) * OC + oc]);
            }
          }
        grad_kernel[i] = T(sum);
      }
    });
  }
};

// ======================================================================== fast

// Loads the input halo of a tile into x_s[(row * cols + col) * 32 + lane]: rows x cols
// pixels from (ih0, iw0) of image n, 32 input channels from c_lo (zero outside the image
// and past the last channel; the compute phases never read those cells, but nothing in
// shared memory is left unwritten). Consecutive threads load consecutive channels of one
// pixel: coalesced. Each thread writes its own cells (e = t, t + threads, ...): race-free.
template <class T>
CONVLAB_DEVICE void load_input_halo(const Conv2dGeometry& g, const T* x, index_t n, index_t ih0,
                                    index_t iw0, index_t c_lo, int rows, int cols, int t,
                                    int threads, T* x_s) {
  const int count = rows * cols * depthwise_detail::kChannelChunk;
  for (int e = t; e < count; e += threads) {
    const int lane = e % depthwise_detail::kChannelChunk, pixel = e / depthwise_detail::kChannelChunk;
    const index_t ih = ih0 + pixel / cols, iw = iw0 + pixel % cols, c = c_lo + lane;
    T v = 0;
    if (ih >= 0 && ih < g.in_height && iw >= 0 && iw < g.in_width && c < g.in_channels)
      v = x[((n * g.in_height + ih) * g.in_width + iw) * g.in_channels + c];
    x_s[e] = v;
  }
}

// y for a tile_h x tile_w tile of output pixels x 32 output channels [o0, o0 + 32).
// Threads: 32 * tile_h; warp r owns output row oh0 + r, lane l output channel o0 + l, and
// each thread keeps tile_w <= 8 columns in registers. Shared memory:
//   x_s  rows x cols x 32   input halo, rows = (tile_h-1)*stride_h + dilated KH (same for
//                           cols), channels from c_lo = o0 / dm (32 cover o0..o0+31 for
//                           any dm >= 1)
//   k_s  KH*KW x 32         the chunk's kernel taps
// x_s reads: lanes read consecutive (dm = 1) or repeated (dm > 1, a broadcast) words of
// one pixel, so there are no bank conflicts.
template <class T>
struct DepthwiseForwardTiled {
  static constexpr int kMaxThreads = 32 * depthwise_detail::kMaxTileRows;
  Conv2dGeometry g;
  const T* x;
  const T* kernel;
  const T* bias;  // may be null
  T* y;
  int tile_h, tile_w, rows, cols;
  index_t tiles_h, tiles_w, chunks, blocks;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    using namespace depthwise_detail;
    T* x_s = ex.template shared<T>();
    T* k_s = x_s + rows * cols * kChannelChunk;
    const int taps = int(g.kernel_height * g.kernel_width);
    const int KW = int(g.kernel_width);
    int sh, sw, dh, dw;
    tile_steps(g, tile_h, tile_w, &sh, &sw, &dh, &dw);
    const index_t OC = g.out_channels;
    for (index_t b = ex.block_x(); b < blocks; b += ex.grid_x()) {
      // Chunks of one tile are neighbours in the grid: they share halo rows in L2.
      const index_t chunk = b % chunks, tile_x = (b / chunks) % tiles_w;
      const index_t tile_y = (b / (chunks * tiles_w)) % tiles_h;
      const index_t n = b / (chunks * tiles_w * tiles_h);
      const index_t o0 = chunk * kChannelChunk, c_lo = o0 / g.depth_multiplier;
      const index_t oh0 = tile_y * tile_h, ow0 = tile_x * tile_w;
      const index_t ih0 = oh0 * g.stride_h - g.pad_top, iw0 = ow0 * g.stride_w - g.pad_left;

      // Phase 1: stage the halo and the taps. Each thread writes its own cells.
      ex.each([&](int t) {
        load_input_halo(g, x, n, ih0, iw0, c_lo, rows, cols, t, ex.threads(), x_s);
        for (int e = t; e < taps * kChannelChunk; e += ex.threads()) {
          const index_t oc = o0 + e % kChannelChunk;
          k_s[e] = oc < OC ? kernel[index_t(e / kChannelChunk) * OC + oc] : T(0);
        }
      });
      ex.sync();
      // Phase 2: each thread reads shared memory (written only in phase 1) and writes its
      // own y elements.
      ex.each([&](int t) {
        const int lane = t % kChannelChunk, r = t / kChannelChunk;
        const index_t oc = o0 + lane, oh = oh0 + r;
        if (oc >= OC || oh >= g.out_height) return;
        const int cl = int(oc / g.depth_multiplier - c_lo);
        // The halo rows and columns that lie inside the image.
        const int row_lo = int(clamp_index(-ih0, 0, rows));
        const int row_hi = int(clamp_index(g.in_height - ih0, 0, rows));
        const int col_lo = int(clamp_index(-iw0, 0, cols));
        const int col_hi = int(clamp_index(g.in_width - iw0, 0, cols));
        const T init = bias ? bias[oc] : T(0);
        T acc[kColumns];
        CONVLAB_UNROLL
        for (int j = 0; j < kColumns; ++j) acc[j] = init;
        for (int tap = 0; tap < taps; ++tap) {
          const int kh = tap / KW, kw = tap % KW;
          const int rr = r * sh + kh * dh;
          if (rr < row_lo || rr >= row_hi) continue;
          const T k = k_s[tap * kChannelChunk + lane];
          const T* row = x_s + rr * cols * kChannelChunk + cl;
          CONVLAB_UNROLL
          for (int j = 0; j < kColumns; ++j) {
            const int cc = j * sw + kw * dw;
            if (j < tile_w && cc >= col_lo && cc < col_hi) acc[j] += row[cc * kChannelChunk] * k;
          }
        }
        T* out = y + ((n * g.out_height + oh) * g.out_width + ow0) * OC + oc;
        CONVLAB_UNROLL
        for (int j = 0; j < kColumns; ++j)
          if (j < tile_w && ow0 + j < g.out_width) out[j * OC] = acc[j];
      });
      ex.sync();  // the next tile's phase 1 overwrites x_s and k_s
    }
  }
};

// grad_x for tile_h input rows x tile_w input columns x 32 input channels [c0, c0 + 32).
// The columns of a block are iw = iw0 + j*stride_w (j < tile_w): one residue class
// ("phase") of the columns, so that for a kernel column kw, (iw + pad_left - kw*dw) is a
// multiple of stride_w for all j or for none, and then the grad_y columns are
// ow_kw + j, consecutive. Threads: 32 * tile_h; warp r owns input row ih0 + r, lane l
// input channel c0 + l, each thread tile_w columns in registers. Shared memory, per
// filter m of the dm filters (loaded one after another):
//   gy_s  rows x cols x 32   grad_y rows [oh_lo, oh_lo + rows), columns [ow_lo, ow_lo +
//                            cols), output channels (c0 + l)*dm + m
//   k_s   KH*KW x 32         the taps of those output channels
template <class T>
struct DepthwiseBackwardInputTiled {
  static constexpr int kMaxThreads = 32 * depthwise_detail::kMaxTileRows;
  Conv2dGeometry g;
  const T* grad_y;
  const T* kernel;
  T* grad_x;
  int tile_h, tile_w, rows, cols;
  index_t tiles_h, tiles_w, chunks, blocks;  // blocks = N * tiles_h * tiles_w * stride_w * chunks

  struct Columns {
    T v[depthwise_detail::kColumns];
  };

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    using namespace depthwise_detail;
    T* gy_s = ex.template shared<T>();
    T* k_s = gy_s + rows * cols * kChannelChunk;
    const index_t C = g.in_channels, OC = g.out_channels, dm = g.depth_multiplier;
    const index_t sh = g.stride_h, sw = g.stride_w;
    const int KH = int(g.kernel_height), KW = int(g.kernel_width), taps = KH * KW;
    auto total = ex.template per_thread<Columns>();  // the sum over the dm filters
    for (index_t b = ex.block_x(); b < blocks; b += ex.grid_x()) {
      const index_t chunk = b % chunks, phase = (b / chunks) % sw;
      const index_t tile_x = (b / (chunks * sw)) % tiles_w;
      const index_t tile_y = (b / (chunks * sw * tiles_w)) % tiles_h;
      const index_t n = b / (chunks * sw * tiles_w * tiles_h);
      const index_t c0 = chunk * kChannelChunk;
      const index_t ih0 = tile_y * tile_h, iw0 = tile_x * tile_w * sw + phase;
      // The first grad_y row and column any tap of this tile reaches (floor: may be < 0).
      const index_t oh_lo = floor_div(ih0 + g.pad_top - (g.kernel_height - 1) * g.dilation_h, sh);
      const index_t ow_lo = floor_div(iw0 + g.pad_left - (g.kernel_width - 1) * g.dilation_w, sw);
      // Columns j < columns lie inside the input.
      const int columns = int(clamp_index(ceil_div(g.in_width - iw0, sw), 0, tile_w));

      for (index_t m = 0; m < dm; ++m) {
        // Phase 1: stage grad_y and the taps of filter m. Each thread writes its own cells.
        ex.each([&](int t) {
          const int count = rows * cols * kChannelChunk;
          for (int e = t; e < count; e += ex.threads()) {
            const int lane = e % kChannelChunk, pixel = e / kChannelChunk;
            const index_t oh = oh_lo + pixel / cols, ow = ow_lo + pixel % cols;
            const index_t c = c0 + lane;
            T v = 0;
            if (oh >= 0 && oh < g.out_height && ow >= 0 && ow < g.out_width && c < C)
              v = grad_y[((n * g.out_height + oh) * g.out_width + ow) * OC + c * dm + m];
            gy_s[e] = v;
          }
          for (int e = t; e < taps * kChannelChunk; e += ex.threads()) {
            const index_t c = c0 + e % kChannelChunk;
            k_s[e] = c < C ? kernel[index_t(e / kChannelChunk) * OC + c * dm + m] : T(0);
          }
        });
        ex.sync();
        // Phase 2: reads shared memory only; writes the thread's own registers.
        ex.each([&](int t) {
          const int lane = t % kChannelChunk, r = t / kChannelChunk;
          const index_t ih = ih0 + r;
          if (c0 + lane >= C || ih >= g.in_height) return;
          T part[kColumns];
          CONVLAB_UNROLL
          for (int j = 0; j < kColumns; ++j) part[j] = 0;
          // Taps in decreasing order: output pixels in increasing order, as on the CPU.
          for (int kh = KH - 1; kh >= 0; --kh) {
            const index_t rh = ih + g.pad_top - kh * g.dilation_h;
            if (rh < 0 || rh % sh != 0 || rh / sh >= g.out_height) continue;
            const int lr = int(rh / sh - oh_lo);
            for (int kw = KW - 1; kw >= 0; --kw) {
              const index_t rw = iw0 + g.pad_left - kw * g.dilation_w;
              if (rw % sw != 0) continue;  // the same for every j: all columns share a phase
              const index_t ow = floor_div(rw, sw);  // grad_y column of j = 0
              // Columns j whose grad_y column ow + j lies in [0, OW).
              const int j_lo = int(clamp_index(-ow, 0, columns));
              const int j_hi = int(clamp_index(g.out_width - ow, 0, columns));
              const T k = k_s[(kh * KW + kw) * kChannelChunk + lane];
              const T* src = gy_s + (lr * cols + int(ow - ow_lo)) * kChannelChunk + lane;
              CONVLAB_UNROLL
              for (int j = 0; j < kColumns; ++j)
                if (j >= j_lo && j < j_hi) part[j] += src[j * kChannelChunk] * k;
            }
          }
          CONVLAB_UNROLL
          for (int j = 0; j < kColumns; ++j) total[t].v[j] = m == 0 ? part[j] : total[t].v[j] + part[j];
        });
        ex.sync();  // the next filter's phase 1 overwrites gy_s and k_s
      }
      // Phase 3: each thread writes its own grad_x elements.
      ex.each([&](int t) {
        const int lane = t % kChannelChunk, r = t / kChannelChunk;
        const index_t c = c0 + lane, ih = ih0 + r;
        if (c >= C || ih >= g.in_height) return;
        T* out = grad_x + ((n * g.in_height + ih) * g.in_width + iw0) * C + c;
        CONVLAB_UNROLL
        for (int j = 0; j < kColumns; ++j)
          if (j < columns) out[j * sw * C] = total[t].v[j];
      });
    }
  }
};

// Program 1 of the fast kernel gradient. Block b owns channel chunk b % chunks (32 output
// channels from o0) and the run of output-pixel tiles [p*tiles_per_run, (p+1)*tiles_per_run)
// with p = b / chunks, tiles taken in (n, tile row, tile column) order. Per tile it stages
// the input halo (as the forward) and the tile's grad_y, then thread (group q, lane l)
// adds, for each tap it owns (tap = q, q + groups, ...), the tile's pixels in row-major
// order into acc_s[tap][l]. At the end, partial[p][tap][oc] = acc_s[tap][oc - o0].
// Shared memory: x_s rows x cols x 32, gy_s tile_h*tile_w x 32, acc_s KH*KW x 32.
template <class T>
struct DepthwiseBackwardKernelPartials {
  static constexpr int kMaxThreads = 512;
  Conv2dGeometry g;
  const T* x;
  const T* grad_y;
  T* partial;  // (runs, KH*KW, OC)
  int tile_h, tile_w, rows, cols;
  index_t tiles_h, tiles_w, tiles, tiles_per_run, chunks, blocks;  // blocks = runs * chunks

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    using namespace depthwise_detail;
    T* x_s = ex.template shared<T>();
    T* gy_s = x_s + rows * cols * kChannelChunk;
    T* acc_s = gy_s + tile_h * tile_w * kChannelChunk;
    const int taps = int(g.kernel_height * g.kernel_width), KW = int(g.kernel_width);
    int sh, sw, dh, dw;
    tile_steps(g, tile_h, tile_w, &sh, &sw, &dh, &dw);
    const index_t OC = g.out_channels;
    for (index_t b = ex.block_x(); b < blocks; b += ex.grid_x()) {
      const index_t chunk = b % chunks, run = b / chunks;
      const index_t o0 = chunk * kChannelChunk, c_lo = o0 / g.depth_multiplier;
      // Phase 0: every (tap, lane) sum starts at zero; its owner writes it.
      ex.each([&](int t) {
        const int groups = ex.threads() / kChannelChunk;
        for (int tap = t / kChannelChunk; tap < taps; tap += groups)
          acc_s[tap * kChannelChunk + t % kChannelChunk] = 0;
      });
      const index_t first = run * tiles_per_run;
      const index_t last = min_index(tiles, first + tiles_per_run);
      for (index_t tile = first; tile < last; ++tile) {
        const index_t tile_x = tile % tiles_w, tile_y = (tile / tiles_w) % tiles_h;
        const index_t n = tile / (tiles_w * tiles_h);
        const index_t oh0 = tile_y * tile_h, ow0 = tile_x * tile_w;
        const index_t ih0 = oh0 * g.stride_h - g.pad_top, iw0 = ow0 * g.stride_w - g.pad_left;
        // Phase 1: stage the input halo and grad_y (x_s, gy_s; not acc_s). Each thread
        // writes its own cells.
        ex.each([&](int t) {
          load_input_halo(g, x, n, ih0, iw0, c_lo, rows, cols, t, ex.threads(), x_s);
          for (int e = t; e < tile_h * tile_w * kChannelChunk; e += ex.threads()) {
            const int lane = e % kChannelChunk, pixel = e / kChannelChunk;
            const index_t oh = oh0 + pixel / tile_w, ow = ow0 + pixel % tile_w;
            const index_t oc = o0 + lane;
            T v = 0;
            if (oh < g.out_height && ow < g.out_width && oc < OC)
              v = grad_y[((n * g.out_height + oh) * g.out_width + ow) * OC + oc];
            gy_s[e] = v;
          }
        });
        ex.sync();
        // Phase 2: reads x_s and gy_s; each acc_s cell is read and written by its owner
        // only.
        ex.each([&](int t) {
          const int lane = t % kChannelChunk, groups = ex.threads() / kChannelChunk;
          const index_t oc = o0 + lane;
          if (oc >= OC) return;
          const int cl = int(oc / g.depth_multiplier - c_lo);
          const int out_rows = int(min_index(tile_h, g.out_height - oh0));
          const int out_cols = int(min_index(tile_w, g.out_width - ow0));
          const int row_lo = int(clamp_index(-ih0, 0, rows));
          const int row_hi = int(clamp_index(g.in_height - ih0, 0, rows));
          const int col_lo = int(clamp_index(-iw0, 0, cols));
          const int col_hi = int(clamp_index(g.in_width - iw0, 0, cols));
          for (int tap = t / kChannelChunk; tap < taps; tap += groups) {
            const int kh = tap / KW, kw = tap % KW;
            T sum = acc_s[tap * kChannelChunk + lane];
            for (int r = 0; r < out_rows; ++r) {
              const int rr = r * sh + kh * dh;
              if (rr < row_lo || rr >= row_hi) continue;
              const T* in = x_s + rr * cols * kChannelChunk + cl;
              const T* gy = gy_s + r * tile_w * kChannelChunk + lane;
              for (int j = 0; j < out_cols; ++j) {
                const int cc = j * sw + kw * dw;
                if (cc >= col_lo && cc < col_hi)
                  sum += in[cc * kChannelChunk] * gy[j * kChannelChunk];
              }
            }
            acc_s[tap * kChannelChunk + lane] = sum;
          }
        });
        ex.sync();  // the next tile's phase 1 overwrites x_s and gy_s
      }
      // Phase 3: each owner writes its sums (coalesced along oc).
      ex.each([&](int t) {
        const int lane = t % kChannelChunk, groups = ex.threads() / kChannelChunk;
        const index_t oc = o0 + lane;
        if (oc >= OC) return;
        for (int tap = t / kChannelChunk; tap < taps; tap += groups)
          partial[(run * taps + tap) * OC + oc] = acc_s[tap * kChannelChunk + lane];
      });
      // No barrier needed before the next block's phase 0: it writes only the acc_s cells
      // this thread owns and has just read.
    }
  }
};

// Program 2 of the fast kernel gradient: grad_kernel[i] = sum over the runs of
// partial[p][i], in double, in a fixed order. Block b owns the 32 kernel elements
// i = 32*b + lane; its warps split the runs (warp q adds runs q, q + warps, ... in
// order), so each thread streams runs/warps values instead of all of them; then lane
// thread of warp 0 adds the warp sums in warp order. Consecutive lanes read consecutive
// elements of a run: coalesced. Shared memory: warps x 32 doubles.
template <class T>
struct DepthwiseBackwardKernelSumRuns {
  static constexpr int kMaxThreads = 256;
  const T* partial;
  index_t runs, size;  // size = KH*KW*OC
  T* grad_kernel;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    constexpr int kLanes = depthwise_detail::kChannelChunk;
    double* warp_sums = ex.template shared<double>();
    for (index_t b = ex.block_x(); b * kLanes < size; b += ex.grid_x()) {
      // Phase 1: each thread writes its own warp_sums cell.
      ex.each([&](int t) {
        const int warps = ex.threads() / kLanes;
        const index_t i = b * kLanes + t % kLanes;
        double sum = 0;
        if (i < size)
          for (index_t p = t / kLanes; p < runs; p += warps) sum += double(partial[p * size + i]);
        warp_sums[t] = sum;
      });
      ex.sync();
      // Phase 2: warp 0 reads the cells written in phase 1 and writes grad_kernel.
      ex.each([&](int t) {
        const int warps = ex.threads() / kLanes;
        const index_t i = b * kLanes + t;
        if (t >= kLanes || i >= size) return;
        double sum = 0;
        for (int q = 0; q < warps; ++q) sum += warp_sums[q * kLanes + t];
        grad_kernel[i] = T(sum);
      });
      ex.sync();  // the next element block's phase 1 overwrites warp_sums
    }
  }
};

// Program 2's plan: one block per 32 kernel elements, as many warps as keep each
// thread's share of the runs at 16 or more (at most 8 warps).
inline LaunchPlan plan_depthwise_sum_runs(index_t runs, index_t size) {
  const index_t warps = std::max<index_t>(1, std::min<index_t>(8, runs / 16));
  return depthwise_detail::plan_blocks(ceil_div(size, depthwise_detail::kChannelChunk),
                                       int(32 * warps),
                                       std::size_t(32 * warps) * sizeof(double));
}

// ======================================================================== planners

// Forward: tiles of up to 8 x 8 output pixels (one warp per row), shrunk to fit shared.
template <class T>
depthwise_detail::TileShape plan_depthwise_forward_tile(const Conv2dGeometry& g) {
  using namespace depthwise_detail;
  const int tile_h = int(std::min<index_t>(kMaxTileRows, g.out_height));
  const int tile_w = int(std::min<index_t>(kColumns, g.out_width));
  return fit_tile(tile_h, tile_w, sizeof(T),
                  [&](int th, int tw, index_t* rows, index_t* cols, index_t* extra) {
                    input_halo(g, th, tw, rows, cols);
                    *extra = g.kernel_height * g.kernel_width;  // k_s
                  });
}

inline index_t depthwise_channel_chunks(index_t channels) {
  return ceil_div(channels, depthwise_detail::kChannelChunk);
}

// Backward input: tile_h input rows x tile_w columns of one phase; the grad_y region they
// reach is at most (tile_h - 1 + (KH-1)*dh) / sh + 2 rows (floor of the last minus floor
// of the first, plus one) and tile_w + ceil((KW-1)*dw / sw) columns.
template <class T>
depthwise_detail::TileShape plan_depthwise_backward_input_tile(const Conv2dGeometry& g) {
  using namespace depthwise_detail;
  const int tile_h = int(std::min<index_t>(kMaxTileRows, g.in_height));
  const int tile_w = int(std::min<index_t>(kColumns, ceil_div(g.in_width, g.stride_w)));
  return fit_tile(tile_h, tile_w, sizeof(T),
                  [&](int th, int tw, index_t* rows, index_t* cols, index_t* extra) {
                    const index_t reach_h = (g.kernel_height - 1) * g.dilation_h;
                    const index_t reach_w = (g.kernel_width - 1) * g.dilation_w;
                    *rows = (th - 1 + reach_h) / g.stride_h + 2;
                    *cols = tw + ceil_div(reach_w, g.stride_w);
                    *extra = g.kernel_height * g.kernel_width;  // k_s
                  });
}

// Backward kernel: tiles of up to 8 x 8 output pixels; staged x halo, grad_y tile and
// the per-tap sums.
template <class T>
depthwise_detail::TileShape plan_depthwise_backward_kernel_tile(const Conv2dGeometry& g) {
  using namespace depthwise_detail;
  const int tile_h = int(std::min<index_t>(8, g.out_height));
  const int tile_w = int(std::min<index_t>(8, g.out_width));
  return fit_tile(tile_h, tile_w, sizeof(T),
                  [&](int th, int tw, index_t* rows, index_t* cols, index_t* extra) {
                    input_halo(g, th, tw, rows, cols);
                    *extra = index_t(th) * tw + g.kernel_height * g.kernel_width;  // gy_s, acc_s
                  });
}

// Groups of 32 threads for the kernel gradient: one group per tap up to 16, taps spread
// evenly (9 taps: 9 groups, 25 taps: 13 groups of at most 2).
inline int depthwise_backward_kernel_groups(index_t taps) {
  const index_t per_group = ceil_div(taps, 16);
  return int(ceil_div(taps, per_group));
}

// Runs of tiles for the kernel gradient: enough blocks (runs x channel chunks) to fill
// ~132 SMs several times over (about 1024), no more, since program 2 adds the runs.
inline index_t depthwise_backward_kernel_tiles_per_run(index_t tiles, index_t chunks) {
  const index_t target_runs = std::max<index_t>(1, ceil_div(1024, chunks));
  return ceil_div(tiles, std::min(tiles, target_runs));
}

// ======================================================================== launchers

template <class Runner, class T>
void depthwise_conv2d_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                              const T* kernel, const T* bias, T* y) {
  using namespace depthwise_detail;
  const TileShape tile = plan_depthwise_forward_tile<T>(g);
  if (variant == Variant::Reference || !tile.fits) {
    run("depthwise_conv2d_forward_reference", plan_grid_stride(g.out_pixels() * g.out_channels),
        DepthwiseForwardReference<T>{g, x, kernel, bias, y});
    return;
  }
  const index_t tiles_h = tiles_along(g.out_height, tile.tile_h);
  const index_t tiles_w = tiles_along(g.out_width, tile.tile_w);
  const index_t chunks = depthwise_channel_chunks(g.out_channels);
  const index_t blocks = g.batch * tiles_h * tiles_w * chunks;
  run("depthwise_conv2d_forward_tiled", plan_blocks(blocks, 32 * tile.tile_h, tile.shared_bytes),
      DepthwiseForwardTiled<T>{g, x, kernel, bias, y, tile.tile_h, tile.tile_w, tile.rows,
                               tile.cols, tiles_h, tiles_w, chunks, blocks});
}

template <class Runner, class T>
void depthwise_conv2d_backward_input(Runner& run, Variant variant, const Conv2dGeometry& g,
                                     const T* grad_y, const T* kernel, T* grad_x) {
  using namespace depthwise_detail;
  const TileShape tile = plan_depthwise_backward_input_tile<T>(g);
  if (variant == Variant::Reference || !tile.fits) {
    run("depthwise_conv2d_backward_input_reference",
        plan_grid_stride(g.in_pixels() * g.in_channels),
        DepthwiseBackwardInputReference<T>{g, grad_y, kernel, grad_x});
    return;
  }
  const index_t tiles_h = tiles_along(g.in_height, tile.tile_h);
  const index_t tiles_w = tiles_along(g.in_width, index_t(tile.tile_w) * g.stride_w);
  const index_t chunks = depthwise_channel_chunks(g.in_channels);
  const index_t blocks = g.batch * tiles_h * tiles_w * g.stride_w * chunks;
  run("depthwise_conv2d_backward_input_tiled",
      plan_blocks(blocks, 32 * tile.tile_h, tile.shared_bytes),
      DepthwiseBackwardInputTiled<T>{g, grad_y, kernel, grad_x, tile.tile_h, tile.tile_w,
                                     tile.rows, tile.cols, tiles_h, tiles_w, chunks, blocks});
}

template <class Runner, class T>
void depthwise_conv2d_backward_kernel(Runner& run, Variant variant, const Conv2dGeometry& g,
                                      const T* x, const T* grad_y, T* grad_kernel) {
  using namespace depthwise_detail;
  const TileShape tile = plan_depthwise_backward_kernel_tile<T>(g);
  const index_t taps = g.kernel_height * g.kernel_width, size = taps * g.out_channels;
  if (variant == Variant::Reference || !tile.fits) {
    run("depthwise_conv2d_backward_kernel_reference", plan_grid_stride(size),
        DepthwiseBackwardKernelReference<T>{g, x, grad_y, grad_kernel});
    return;
  }
  const index_t tiles_h = tiles_along(g.out_height, tile.tile_h);
  const index_t tiles_w = tiles_along(g.out_width, tile.tile_w);
  const index_t tiles = g.batch * tiles_h * tiles_w;
  const index_t chunks = depthwise_channel_chunks(g.out_channels);
  const index_t tiles_per_run = depthwise_backward_kernel_tiles_per_run(tiles, chunks);
  const index_t runs = ceil_div(tiles, tiles_per_run);
  T* partial = static_cast<T*>(run.workspace(std::size_t(runs * size) * sizeof(T)));
  run("depthwise_conv2d_backward_kernel_tiled_partials",
      plan_blocks(runs * chunks, 32 * depthwise_backward_kernel_groups(taps), tile.shared_bytes),
      DepthwiseBackwardKernelPartials<T>{g, x, grad_y, partial, tile.tile_h, tile.tile_w,
                                         tile.rows, tile.cols, tiles_h, tiles_w, tiles,
                                         tiles_per_run, chunks, runs * chunks});
  run("depthwise_conv2d_backward_kernel_tiled_sum_runs", plan_depthwise_sum_runs(runs, size),
      DepthwiseBackwardKernelSumRuns<T>{partial, runs, size, grad_kernel});
}

}  // namespace convlab::cuda
