// conv2d on the GPU: forward, gradient of the input, gradient of the kernel, gradient of
// the bias, and the transposed conv (Keras Conv2DTranspose) by role swap, as block
// programs (exec.h) that run on the GPU and, through the host executor, on the CPU.
//
// Shapes (Keras layouts, C-contiguous):
//   x        (N, H, W, Cin)          y, grad_y  (N, OH, OW, Cout)
//   kernel   (KH, KW, Cin, Cout)     bias       (Cout)
// Index math (common/geometry.h), stated once: output pixel (n, oh, ow) and tap (kh, kw)
// read input pixel
//   ih = oh*stride_h - pad_top  + kh*dilation_h
//   iw = ow*stride_w - pad_left + kw*dilation_w
// and taps outside [0, H) x [0, W) read zero. As GEMMs over the implicit im2col matrix
// P[M = N*OH*OW, K = KH*KW*Cin] (row (n, oh, ow), column (kh, kw, ci)):
//   forward          y[m, co]        = sum_k P[m, k] * kernel[k, co]       (+ bias[co])
//   backward input   grad_x[p, ci]   = sum over (kh, kw, co) of grad_y[n, oh, ow, co] *
//                                      kernel[kh, kw, ci, co], over the (oh, ow) that read
//                                      input pixel p = (n, ih, iw): oh = (ih + pad_top -
//                                      kh*dilation_h) / stride_h when that divides exactly
//                                      and lands in [0, OH) (the same along w)
//   backward kernel  grad_kernel[k, co] = sum_m P[m, k] * grad_y[m, co]
//   bias             grad_bias[c]    = sum over rows r of grad_y[r, c]
// The transposed conv is described by the geometry of the forward conv it is the input
// gradient of (make_conv2d_transpose_geometry), so, exactly as on the CPU:
//   conv2d_transpose_forward          = backward input of g, plus a bias of length Cin
//   conv2d_transpose_backward_input   = forward of g without bias
//   conv2d_transpose_backward_kernel  = backward kernel of g with x and grad_y swapped
// (pad_bottom / pad_right may be negative there; the bounds checks above cover it.)
//
// Variants:
//   reference  one thread per output element, direct loops over the taps, grid-stride.
//              The input gradient is a gather (each grad_x element loops over the taps
//              that can reach it), the kernel gradient sums over (n, oh, ow) in order.
//   fast       (default) shared-memory implicit GEMMs with register blocking (fp32 FMA
//              for float). The im2col gather happens while a tile is loaded into shared
//              memory, never in global memory; the next tile is loaded into registers
//              while the current one is multiplied, which hides global latency. Each
//              thread keeps a TM x TN block of outputs in registers, so one value read
//              from shared memory feeds TN (or TM) FMAs instead of one.
//     forward           C[M, Cout] = P x kernel, tiles BM x BN, steps of BK along K.
//     backward input    grad_x[N*H*W, Cin] as an implicit GEMM over K' = KH*KW*Cout,
//                       one writer per grad_x element (a gather, no atomics). The stride
//                       divisibility test needs no division per element: each row keeps
//                       (ih + pad_top) split into quotient and remainder by the stride,
//                       and each tap kh*dilation_h the same way.
//     backward kernel   grad_kernel[K, Cout] = P^T x grad_y: the reduction (M, huge) is
//                       split in fixed chunks over blockIdx.z into a workspace, and a
//                       second program adds the splits in order s = 0, 1, ...
//                       (deterministic split-K), so even a 3x3x3x32 kernel gradient
//                       keeps the GPU busy.
//     bias              32 channels per block (coalesced rows), 8 row lanes, a fixed
//                       split over rows, sums in double (as the CPU), then the splits
//                       added in order.
#pragma once

#include <cstddef>

#include "../common/hd.h"
#include "kernels.h"

namespace convlab::cuda {

// ============================================================================ reference

// One thread per y element (n, oh, ow, co): the sum over (kh, kw, ci) in that order.
template <class T>
struct Conv2dForwardReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  const T* kernel;
  const T* bias;  // may be null
  T* y;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t count = g.out_pixels() * g.out_channels;
      const index_t step = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += step) {
        const index_t co = i % g.out_channels, pixel = i / g.out_channels;
        const index_t ow = pixel % g.out_width, oh = (pixel / g.out_width) % g.out_height;
        const index_t n = pixel / (g.out_width * g.out_height);
        T sum = T(0);
        for (index_t kh = 0; kh < g.kernel_height; ++kh) {
          const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
          if (ih < 0 || ih >= g.in_height) continue;
          for (index_t kw = 0; kw < g.kernel_width; ++kw) {
            const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
            if (iw < 0 || iw >= g.in_width) continue;
            const T* xp = x + ((n * g.in_height + ih) * g.in_width + iw) * g.in_channels;
            const T* kp = kernel + (kh * g.kernel_width + kw) * g.in_channels * g.out_channels + co;
            for (index_t ci = 0; ci < g.in_channels; ++ci) sum += xp[ci] * kp[ci * g.out_channels];
          }
        }
        y[i] = bias ? sum + bias[co] : sum;
      }
    });
  }
};

// One thread per grad_x element (n, ih, iw, ci), gathering from the (oh, ow) that read it.
// bias (length Cin, may be null) is the transposed conv's.
template <class T>
struct Conv2dBackwardInputReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* grad_y;
  const T* kernel;
  const T* bias;
  T* grad_x;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t count = g.in_pixels() * g.in_channels;
      const index_t step = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += step) {
        const index_t ci = i % g.in_channels, pixel = i / g.in_channels;
        const index_t iw = pixel % g.in_width, ih = (pixel / g.in_width) % g.in_height;
        const index_t n = pixel / (g.in_width * g.in_height);
        T sum = T(0);
        for (index_t kh = 0; kh < g.kernel_height; ++kh) {
          const index_t th = ih + g.pad_top - kh * g.dilation_h;  // = oh * stride_h
          const index_t oh = th / g.stride_h;
          if (th < 0 || oh * g.stride_h != th || oh >= g.out_height) continue;
          for (index_t kw = 0; kw < g.kernel_width; ++kw) {
            const index_t tw = iw + g.pad_left - kw * g.dilation_w;
            const index_t ow = tw / g.stride_w;
            if (tw < 0 || ow * g.stride_w != tw || ow >= g.out_width) continue;
            const T* dy = grad_y + ((n * g.out_height + oh) * g.out_width + ow) * g.out_channels;
            const T* kp = kernel + ((kh * g.kernel_width + kw) * g.in_channels + ci) * g.out_channels;
            for (index_t co = 0; co < g.out_channels; ++co) sum += dy[co] * kp[co];
          }
        }
        grad_x[i] = bias ? sum + bias[ci] : sum;
      }
    });
  }
};

// One thread per grad_kernel element (kh, kw, ci, co): the sum over (n, oh, ow) in order.
template <class T>
struct Conv2dBackwardKernelReference {
  static constexpr int kMaxThreads = 256;
  Conv2dGeometry g;
  const T* x;
  const T* grad_y;
  T* grad_kernel;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t count = g.patch_size() * g.out_channels;
      const index_t step = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += step) {
        const index_t co = i % g.out_channels, k = i / g.out_channels;
        const index_t ci = k % g.in_channels, tap = k / g.in_channels;
        const index_t kw = tap % g.kernel_width, kh = tap / g.kernel_width;
        T sum = T(0);
        for (index_t n = 0; n < g.batch; ++n)
          for (index_t oh = 0; oh < g.out_height; ++oh) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
            if (ih < 0 || ih >= g.in_height) continue;
            for (index_t ow = 0; ow < g.out_width; ++ow) {
              const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
              if (iw < 0 || iw >= g.in_width) continue;
              sum += x[((n * g.in_height + ih) * g.in_width + iw) * g.in_channels + ci] *
                     grad_y[((n * g.out_height + oh) * g.out_width + ow) * g.out_channels + co];
            }
          }
        grad_kernel[i] = sum;
      }
    });
  }
};

// One thread per channel: the sum over rows in order, in double (as the CPU).
template <class T>
struct BiasBackwardReference {
  static constexpr int kMaxThreads = 256;
  index_t rows, channels;
  const T* grad_y;
  T* grad_bias;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t step = ex.grid_x() * ex.threads();
      for (index_t c = ex.block_x() * ex.threads() + t; c < channels; c += step) {
        double sum = 0.0;
        for (index_t r = 0; r < rows; ++r) sum += double(grad_y[r * channels + c]);
        grad_bias[c] = T(sum);
      }
    });
  }
};

// ============================================================================ fast

// Tiling of the implicit GEMMs: a block of kThreads computes a BM x BN tile of C in
// steps of BK along the reduction; thread t owns a TM x TN block of it. float: 128 x 64
// tiles, 8 x 4 per thread (32 accumulators); double: 64 x 64, 4 x 4, half the registers
// per value, so neither spills. The pads make the transposed stores into shared memory
// (8 reduction rows x 4 tile rows per warp) hit 32 different banks while keeping rows
// 16-byte aligned for vector reads.
template <class T>
struct Conv2dTiles;
template <>
struct Conv2dTiles<float> {
  static constexpr int kThreads = 256, BM = 128, BN = 64, BK = 8, TM = 8, TN = 4, kPad = 4;
};
template <>
struct Conv2dTiles<double> {
  static constexpr int kThreads = 256, BM = 64, BN = 64, BK = 8, TM = 4, TN = 4, kPad = 2;
};

template <class T>
struct Conv2dTileLayout {
  using Tiles = Conv2dTiles<T>;
  // Shared memory: As[BK][BM + pad] (the A tile, reduction index first), then
  // Bs[BK][BN + pad].
  static constexpr int kAStride = Tiles::BM + Tiles::kPad;
  static constexpr int kBStride = Tiles::BN + Tiles::kPad;
  static constexpr std::size_t kSharedBytes =
      std::size_t(Tiles::BK) * (kAStride + kBStride) * sizeof(T);
  // Threads along N (and M) of the compute mapping: thread t owns rows
  // (t / kThreadsN) * TM + i and columns (t % kThreadsN) * TN + j of the tile.
  static constexpr int kThreadsN = Tiles::BN / Tiles::TN;
  static_assert((Tiles::BM / Tiles::TM) * kThreadsN == Tiles::kThreads, "one TMxTN block per thread");
  static_assert(Tiles::kThreads % Tiles::BK == 0 && Tiles::kThreads % Tiles::BN == 0, "load mappings");
  static_assert((Tiles::BM * Tiles::BK) % Tiles::kThreads == 0, "A tile loads");
  static_assert((Tiles::BN * Tiles::BK) % Tiles::kThreads == 0, "B tile loads");
};

template <class T>
struct Conv2dAccumulator {
  T v[Conv2dTiles<T>::TM][Conv2dTiles<T>::TN];
};

// acc += As^T x Bs over one BK step. Within a warp the As reads are broadcasts (two
// distinct tile rows) and the Bs reads cover 16 consecutive TN-blocks: no conflicts.
template <class T>
CONVLAB_DEVICE void conv2d_multiply_tile(const T* As, const T* Bs, int t, Conv2dAccumulator<T>& acc) {
  using Tiles = Conv2dTiles<T>;
  using Layout = Conv2dTileLayout<T>;
  const int tm = t / Layout::kThreadsN, tn = t % Layout::kThreadsN;
  CONVLAB_UNROLL
  for (int k = 0; k < Tiles::BK; ++k) {
    T a[Tiles::TM], b[Tiles::TN];
    CONVLAB_UNROLL
    for (int i = 0; i < Tiles::TM; ++i) a[i] = As[k * Layout::kAStride + tm * Tiles::TM + i];
    CONVLAB_UNROLL
    for (int j = 0; j < Tiles::TN; ++j) b[j] = Bs[k * Layout::kBStride + tn * Tiles::TN + j];
    CONVLAB_UNROLL
    for (int i = 0; i < Tiles::TM; ++i)
      CONVLAB_UNROLL
      for (int j = 0; j < Tiles::TN; ++j) acc.v[i][j] += a[i] * b[j];
  }
}

template <class T>
CONVLAB_DEVICE void conv2d_zero(Conv2dAccumulator<T>& acc) {
  CONVLAB_UNROLL
  for (int i = 0; i < Conv2dTiles<T>::TM; ++i)
    CONVLAB_UNROLL
    for (int j = 0; j < Conv2dTiles<T>::TN; ++j) acc.v[i][j] = T(0);
}

// Writes thread t's TM x TN block of the tile at (row0, col0) of C[rows, cols] (+ bias),
// masked at the edges. Every element of C has exactly one owner thread in one block.
template <class T>
CONVLAB_DEVICE void conv2d_store_tile(const Conv2dAccumulator<T>& acc, int t, index_t row0,
                                      index_t col0, index_t rows, index_t cols, const T* bias,
                                      T* c) {
  using Tiles = Conv2dTiles<T>;
  using Layout = Conv2dTileLayout<T>;
  const index_t r0 = row0 + (t / Layout::kThreadsN) * Tiles::TM;
  const index_t c0 = col0 + (t % Layout::kThreadsN) * Tiles::TN;
  // The bias is read once into registers (the compiler cannot reuse it across the
  // stores to c, which might alias it).
  T b[Tiles::TN];
  CONVLAB_UNROLL
  for (int j = 0; j < Tiles::TN; ++j) b[j] = bias && c0 + j < cols ? bias[c0 + j] : T(0);
  CONVLAB_UNROLL
  for (int i = 0; i < Tiles::TM; ++i) {
    if (r0 + i >= rows) break;
    CONVLAB_UNROLL
    for (int j = 0; j < Tiles::TN; ++j)
      if (c0 + j < cols) c[(r0 + i) * cols + c0 + j] = acc.v[i][j] + b[j];
  }
}

// Forward (kBackwardInput = false) and input gradient (true) as one implicit GEMM
//   out[rows, cols] = A[rows, depth] x B[depth, cols] (+ bias[cols])
// with reduction index k = (kh, kw, c), c fastest:
//   forward   rows = N*OH*OW, cols = Cout, c = ci:  A = P (from x), B[k, co] = kernel[k, co]
//   backward  rows = N*H*W,   cols = Cin,  c = co:  A[(n, ih, iw), k] = grad_y[n, oh, ow, co]
//             where (oh, ow) reads (ih, iw) through tap (kh, kw) (zero where none does),
//             B[k, ci] = kernel[kh, kw, ci, co]
// Block (x, y) computes the BM x BN tile at rows x*BM, columns y*BN.
//
// Load mapping: thread t loads A elements (k = k0 + t % BK, row t / BK + (kThreads/BK)*j),
// so 8 neighbouring threads read 8 consecutive channels of one pixel (contiguous in x and
// grad_y), and keeps those rows for the whole K loop. B: in the forward, row-major kernel
// rows, so thread t reads column t % BN (coalesced along Cout); in the input gradient the
// kernel is read transposed, so B uses the A mapping (consecutive co are contiguous).
template <class T, bool kBackwardInput>
struct Conv2dImplicitGemmTiled {
  using Tiles = Conv2dTiles<T>;
  using Layout = Conv2dTileLayout<T>;
  static constexpr int kMaxThreads = Tiles::kThreads;
  static constexpr int kRowsPerStep = Tiles::kThreads / Tiles::BK;   // A rows one k covers
  static constexpr int kALoads = Tiles::BM / kRowsPerStep;           // A elements per thread
  static constexpr int kBLoads = Tiles::BN * Tiles::BK / Tiles::kThreads;
  Conv2dGeometry g;
  const T* a_source;  // x (forward) or grad_y (input gradient)
  const T* kernel;
  const T* bias;  // may be null
  T* out;         // y or grad_x

  CONVLAB_HD index_t rows() const { return kBackwardInput ? g.in_pixels() : g.out_pixels(); }
  CONVLAB_HD index_t cols() const { return kBackwardInput ? g.in_channels : g.out_channels; }
  // c of k = (kh, kw, c): Cin in the forward, Cout in the input gradient.
  CONVLAB_HD index_t inner() const { return kBackwardInput ? g.out_channels : g.in_channels; }
  CONVLAB_HD index_t depth() const { return g.kernel_height * g.kernel_width * inner(); }

  // What thread t carries from one phase to the next.
  struct Stage {
    // Its A rows: base = offset of the row's image in a_source (-1 past the last row);
    // forward: h, w = oh*stride - pad (the patch origin);
    // backward: h = (ih + pad_top) / stride_h, hr = (ih + pad_top) % stride_h, same for w.
    index_t base[kALoads], h[kALoads], w[kALoads], hr[kALoads], wr[kALoads];
    // Its k of the next tile, k = k0 + t % BK = (kh, kw, c); forward: tap_h = kh*dilation_h;
    // backward: tap_h, tap_hr = quotient and remainder of kh*dilation_h by stride_h.
    index_t k0, k, kh, kw, c, tap_h, tap_hr, tap_w, tap_wr;
    T a[kALoads], b[kBLoads];
  };

  CONVLAB_DEVICE void set_tap(Stage& s) const {
    const index_t dh = s.kh * g.dilation_h, dw = s.kw * g.dilation_w;
    if (kBackwardInput) {
      s.tap_h = dh / g.stride_h;
      s.tap_hr = dh % g.stride_h;
      s.tap_w = dw / g.stride_w;
      s.tap_wr = dw % g.stride_w;
    } else {
      s.tap_h = dh;
      s.tap_w = dw;
    }
  }

  CONVLAB_DEVICE void start(Stage& s, int t, index_t row0) const {
    CONVLAB_UNROLL
    for (int j = 0; j < kALoads; ++j) {
      const index_t m = row0 + t / Tiles::BK + index_t(kRowsPerStep) * j;
      s.base[j] = -1;
      s.h[j] = s.w[j] = s.hr[j] = s.wr[j] = 0;
      if (m >= rows()) continue;
      if (kBackwardInput) {
        const index_t iw = m % g.in_width, ih = (m / g.in_width) % g.in_height;
        const index_t n = m / (g.in_width * g.in_height);
        s.base[j] = n * g.out_height * g.out_width * g.out_channels;
        s.h[j] = (ih + g.pad_top) / g.stride_h;
        s.hr[j] = (ih + g.pad_top) % g.stride_h;
        s.w[j] = (iw + g.pad_left) / g.stride_w;
        s.wr[j] = (iw + g.pad_left) % g.stride_w;
      } else {
        const index_t ow = m % g.out_width, oh = (m / g.out_width) % g.out_height;
        const index_t n = m / (g.out_width * g.out_height);
        s.base[j] = n * g.in_height * g.in_width * g.in_channels;
        s.h[j] = oh * g.stride_h - g.pad_top;
        s.w[j] = ow * g.stride_w - g.pad_left;
      }
    }
    s.k0 = 0;
    s.k = t % Tiles::BK;
    s.c = s.k % inner();
    s.kw = (s.k / inner()) % g.kernel_width;
    s.kh = s.k / (inner() * g.kernel_width);
    set_tap(s);
  }

  // Moves thread t's k on by BK (one tile).
  CONVLAB_DEVICE void advance(Stage& s) const {
    s.k0 += Tiles::BK;
    s.k += Tiles::BK;
    s.c += Tiles::BK;
    if (s.c < inner()) return;
    while (s.c >= inner()) {
      s.c -= inner();
      if (++s.kw == g.kernel_width) {
        s.kw = 0;
        ++s.kh;
      }
    }
    set_tap(s);
  }

  // Reads thread t's part of the tiles at k0 from global memory into its registers.
  CONVLAB_DEVICE void load(Stage& s, int t, index_t col0) const {
    const index_t K = depth();
    const bool k_inside = s.k < K;
    CONVLAB_UNROLL
    for (int j = 0; j < kALoads; ++j) {
      T v = T(0);
      if (k_inside && s.base[j] >= 0) {
        if (kBackwardInput) {
          // (ih + pad_top - kh*dilation_h) is a multiple of stride_h exactly when the
          // remainders agree; then oh is the difference of the quotients.
          const index_t oh = s.h[j] - s.tap_h, ow = s.w[j] - s.tap_w;
          if (s.hr[j] == s.tap_hr && s.wr[j] == s.tap_wr && oh >= 0 && ow >= 0 &&
              oh < g.out_height && ow < g.out_width)
            v = a_source[s.base[j] + (oh * g.out_width + ow) * g.out_channels + s.c];
        } else {
          const index_t ih = s.h[j] + s.tap_h, iw = s.w[j] + s.tap_w;
          if (ih >= 0 && ih < g.in_height && iw >= 0 && iw < g.in_width)
            v = a_source[s.base[j] + (ih * g.in_width + iw) * g.in_channels + s.c];
        }
      }
      s.a[j] = v;
    }
    CONVLAB_UNROLL
    for (int j = 0; j < kBLoads; ++j) {
      T v = T(0);
      if (kBackwardInput) {
        const index_t ci = col0 + t / Tiles::BK + index_t(kRowsPerStep) * j;
        if (k_inside && ci < g.in_channels)
          v = kernel[((s.kh * g.kernel_width + s.kw) * g.in_channels + ci) * g.out_channels + s.c];
      } else {
        const index_t k = s.k0 + t / Tiles::BN + index_t(Tiles::kThreads / Tiles::BN) * j;
        const index_t co = col0 + t % Tiles::BN;
        if (k < K && co < g.out_channels) v = kernel[k * g.out_channels + co];
      }
      s.b[j] = v;
    }
  }

  // Stores thread t's registers into the shared tiles. Each (k, row) and (k, column) slot
  // is written by exactly one thread; the A stores of a warp (8 k x 4 rows) fall in 32
  // different banks thanks to the pad.
  CONVLAB_DEVICE void store(const Stage& s, int t, T* As, T* Bs) const {
    CONVLAB_UNROLL
    for (int j = 0; j < kALoads; ++j)
      As[(t % Tiles::BK) * Layout::kAStride + t / Tiles::BK + kRowsPerStep * j] = s.a[j];
    CONVLAB_UNROLL
    for (int j = 0; j < kBLoads; ++j) {
      if (kBackwardInput)
        Bs[(t % Tiles::BK) * Layout::kBStride + t / Tiles::BK + kRowsPerStep * j] = s.b[j];
      else
        Bs[(t / Tiles::BN + (Tiles::kThreads / Tiles::BN) * j) * Layout::kBStride + t % Tiles::BN] = s.b[j];
    }
  }

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    T* As = ex.template shared<T>();
    T* Bs = As + Tiles::BK * Layout::kAStride;
    const index_t row0 = ex.block_x() * Tiles::BM, col0 = ex.block_y() * Tiles::BN;
    const index_t K = depth();
    auto stage = ex.template per_thread<Stage>();
    auto acc = ex.template per_thread<Conv2dAccumulator<T>>();
    ex.each([&](int t) {
      start(stage[t], t, row0);
      load(stage[t], t, col0);
      conv2d_zero(acc[t]);
    });
    for (index_t k0 = 0; k0 < K; k0 += Tiles::BK) {
      // Phase 1 writes the shared tiles (one writer per slot); the barrier at the end of
      // the previous iteration ensured nobody still reads them.
      ex.each([&](int t) { store(stage[t], t, As, Bs); });
      ex.sync();
      // Phase 2 only reads shared memory, and fetches the next tile into registers.
      ex.each([&](int t) {
        if (k0 + Tiles::BK < K) {
          advance(stage[t]);
          load(stage[t], t, col0);
        }
        conv2d_multiply_tile(As, Bs, t, acc[t]);
      });
      ex.sync();
    }
    ex.each([&](int t) { conv2d_store_tile(acc[t], t, row0, col0, rows(), cols(), bias, out); });
  }
};

// The kernel gradient, split-K: grad_kernel[K, Cout] = P^T x grad_y with the reduction
// over the M = N*OH*OW output pixels. Block (x, y, z) computes the BM x BN tile at
// (x*BM, y*BN) of grad_kernel over pixels [z*rows_per_split, (z+1)*rows_per_split) and
// writes it to partial[z] (grad_kernel itself when there is one split).
//
// Here the roles turn: the tile rows are the patch elements k and the reduction runs over
// pixels. Thread t loads the A elements (pixel m0 + t / 32, k = x*BM + t % 32 + 32*j): a
// warp reads 32 consecutive channels of one input pixel. Its k (and so its tap offsets)
// stay fixed; only its pixel (n, oh, ow) moves on by BK per tile. B = grad_y rows,
// coalesced along Cout.
template <class T>
struct Conv2dBackwardKernelSplit {
  using Tiles = Conv2dTiles<T>;
  using Layout = Conv2dTileLayout<T>;
  static constexpr int kMaxThreads = Tiles::kThreads;
  static constexpr int kThreadsPerPixel = Tiles::kThreads / Tiles::BK;
  static constexpr int kALoads = Tiles::BM / kThreadsPerPixel;
  static constexpr int kBLoads = Tiles::BN * Tiles::BK / Tiles::kThreads;
  static_assert(Tiles::BM % kThreadsPerPixel == 0, "A tile loads");
  Conv2dGeometry g;
  const T* x;
  const T* grad_y;
  T* partial;  // (splits, K, Cout)
  index_t rows_per_split;  // a multiple of BK

  struct Stage {
    // Its patch elements: tap offsets kh*dilation_h - pad_top, kw*dilation_w - pad_left
    // and ci (-1 past K).
    index_t hoff[kALoads], woff[kALoads], ci[kALoads];
    // The first pixel of the next tile and thread t's pixel m0 + t / kThreadsPerPixel.
    index_t m0, n, oh, ow;
    T a[kALoads], b[kBLoads];
  };

  CONVLAB_DEVICE void start(Stage& s, int t, index_t k_first, index_t m_begin) const {
    const index_t K = g.patch_size();
    CONVLAB_UNROLL
    for (int j = 0; j < kALoads; ++j) {
      const index_t k = k_first + t % kThreadsPerPixel + index_t(kThreadsPerPixel) * j;
      s.ci[j] = -1;
      s.hoff[j] = s.woff[j] = 0;
      if (k >= K) continue;
      const index_t tap = k / g.in_channels;
      s.ci[j] = k % g.in_channels;
      s.hoff[j] = (tap / g.kernel_width) * g.dilation_h - g.pad_top;
      s.woff[j] = (tap % g.kernel_width) * g.dilation_w - g.pad_left;
    }
    s.m0 = m_begin;
    const index_t m = m_begin + t / kThreadsPerPixel;
    s.ow = m % g.out_width;
    s.oh = (m / g.out_width) % g.out_height;
    s.n = m / (g.out_width * g.out_height);
  }

  CONVLAB_DEVICE void advance(Stage& s) const {
    s.m0 += Tiles::BK;
    s.ow += Tiles::BK;
    while (s.ow >= g.out_width) {
      s.ow -= g.out_width;
      if (++s.oh == g.out_height) {
        s.oh = 0;
        ++s.n;
      }
    }
  }

  CONVLAB_DEVICE void load(Stage& s, int t, index_t col0, index_t m_end) const {
    const bool m_inside = s.m0 + t / kThreadsPerPixel < m_end;
    const index_t ih0 = s.oh * g.stride_h, iw0 = s.ow * g.stride_w;
    const index_t image = s.n * g.in_height;
    CONVLAB_UNROLL
    for (int j = 0; j < kALoads; ++j) {
      const index_t ih = ih0 + s.hoff[j], iw = iw0 + s.woff[j];
      s.a[j] = m_inside && s.ci[j] >= 0 && ih >= 0 && ih < g.in_height && iw >= 0 && iw < g.in_width
                   ? x[((image + ih) * g.in_width + iw) * g.in_channels + s.ci[j]]
                   : T(0);
    }
    CONVLAB_UNROLL
    for (int j = 0; j < kBLoads; ++j) {
      const index_t m = s.m0 + t / Tiles::BN + index_t(Tiles::kThreads / Tiles::BN) * j;
      const index_t co = col0 + t % Tiles::BN;
      s.b[j] = m < m_end && co < g.out_channels ? grad_y[m * g.out_channels + co] : T(0);
    }
  }

  // One writer per shared slot: A (pixel t / 32, k t % 32 + 32j), B (pixel t / BN + ..., co t % BN).
  CONVLAB_DEVICE void store(const Stage& s, int t, T* As, T* Bs) const {
    CONVLAB_UNROLL
    for (int j = 0; j < kALoads; ++j)
      As[(t / kThreadsPerPixel) * Layout::kAStride + t % kThreadsPerPixel + kThreadsPerPixel * j] = s.a[j];
    CONVLAB_UNROLL
    for (int j = 0; j < kBLoads; ++j)
      Bs[(t / Tiles::BN + (Tiles::kThreads / Tiles::BN) * j) * Layout::kBStride + t % Tiles::BN] = s.b[j];
  }

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    T* As = ex.template shared<T>();
    T* Bs = As + Tiles::BK * Layout::kAStride;
    const index_t K = g.patch_size(), M = g.out_pixels();
    const index_t row0 = ex.block_x() * Tiles::BM, col0 = ex.block_y() * Tiles::BN;
    const index_t m_begin = ex.block_z() * rows_per_split;
    const index_t m_end = m_begin + rows_per_split < M ? m_begin + rows_per_split : M;
    auto stage = ex.template per_thread<Stage>();
    auto acc = ex.template per_thread<Conv2dAccumulator<T>>();
    ex.each([&](int t) {
      start(stage[t], t, row0, m_begin);
      load(stage[t], t, col0, m_end);
      conv2d_zero(acc[t]);
    });
    for (index_t m0 = m_begin; m0 < m_end; m0 += Tiles::BK) {
      // Same phase structure as Conv2dImplicitGemmTiled: phase 1 writes shared memory
      // (one writer per slot), phase 2 only reads it.
      ex.each([&](int t) { store(stage[t], t, As, Bs); });
      ex.sync();
      ex.each([&](int t) {
        if (m0 + Tiles::BK < m_end) {
          advance(stage[t]);
          load(stage[t], t, col0, m_end);
        }
        conv2d_multiply_tile(As, Bs, t, acc[t]);
      });
      ex.sync();
    }
    T* out = partial + ex.block_z() * K * g.out_channels;
    ex.each([&](int t) {
      conv2d_store_tile<T>(acc[t], t, row0, col0, K, g.out_channels, nullptr, out);
    });
  }
};

// out[i] = sum over s = 0, 1, ... of partial[s][i], in that order (one thread per i).
template <class T, class Sum>
struct ReduceSplits {
  static constexpr int kMaxThreads = 256;
  const Sum* partial;  // (splits, count)
  index_t splits, count;
  T* out;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t step = ex.grid_x() * ex.threads();
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += step) {
        Sum sum = partial[i];
        for (index_t s = 1; s < splits; ++s) sum += partial[s * count + i];
        out[i] = T(sum);
      }
    });
  }
};

// Column sums of grad_y[rows, channels] over a fixed split of the rows. Block (x, y) owns
// channels [32x, 32x + 32) and rows [y*rows_per_split, ...): thread t adds column t % 32
// of rows first + t / 32, + 8, + 16, ... (a warp reads 32 consecutive channels of one
// row), then the 8 row lanes are added in order. Sums in double, as the CPU.
template <class T>
struct BiasBackwardSplit {
  static constexpr int kMaxThreads = 256;
  static constexpr int kColumns = 32, kRowLanes = kMaxThreads / kColumns;
  index_t rows, channels, rows_per_split;
  const T* grad_y;
  double* partial;  // (splits, channels), or null with one split
  T* grad_bias;     // written directly when partial is null

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    double* lanes = ex.template shared<double>();  // [kRowLanes][kColumns]
    const index_t first = ex.block_y() * rows_per_split;
    const index_t last = first + rows_per_split < rows ? first + rows_per_split : rows;
    // Phase 1: thread t writes only its own slot lanes[t].
    ex.each([&](int t) {
      const index_t c = ex.block_x() * kColumns + t % kColumns;
      double sum = 0.0;
      if (c < channels)
        for (index_t r = first + t / kColumns; r < last; r += kRowLanes)
          sum += double(grad_y[r * channels + c]);
      lanes[t] = sum;
    });
    ex.sync();
    // Phase 2: the first 32 threads read the slots written before the barrier.
    ex.each([&](int t) {
      const index_t c = ex.block_x() * kColumns + t;
      if (t >= kColumns || c >= channels) return;
      double sum = lanes[t];
      for (int lane = 1; lane < kRowLanes; ++lane) sum += lanes[lane * kColumns + t];
      if (partial)
        partial[ex.block_y() * channels + c] = sum;
      else
        grad_bias[c] = T(sum);
    });
  }
};

// ============================================================================ plans

// A GPU has about 132 SMs (H100/H200); split-K aims at two blocks per SM at least.
constexpr index_t kConv2dTargetBlocks = 2 * 132;
constexpr index_t kConv2dMaxSplits = 64;

template <class T>
LaunchPlan plan_conv2d_tiled(index_t rows, index_t cols) {
  using Tiles = Conv2dTiles<T>;
  LaunchPlan plan;
  plan.grid_x = ceil_div(rows, Tiles::BM);
  plan.grid_y = ceil_div(cols, Tiles::BN);
  plan.threads = Tiles::kThreads;
  plan.shared_bytes = Conv2dTileLayout<T>::kSharedBytes;
  return plan;
}

// How split-K cuts a reduction of `length` into chunks of `step` elements: enough splits
// that tiles x splits reaches the target, capped, and never more splits than chunks.
// Returns the rows per split (a multiple of step); *splits gets the count.
inline index_t plan_splits(index_t length, index_t step, index_t tiles, index_t* splits) {
  const index_t chunks = ceil_div(length < 1 ? 1 : length, step);
  index_t s = ceil_div(kConv2dTargetBlocks, tiles);
  if (s > kConv2dMaxSplits) s = kConv2dMaxSplits;
  if (s > chunks) s = chunks;
  if (s < 1) s = 1;
  const index_t per_split = ceil_div(chunks, s) * step;
  *splits = ceil_div(chunks * step, per_split);  // no empty split
  return per_split;
}

template <class T>
LaunchPlan plan_conv2d_backward_kernel_split(const Conv2dGeometry& g, index_t splits) {
  LaunchPlan plan = plan_conv2d_tiled<T>(g.patch_size(), g.out_channels);
  plan.grid_z = splits;
  return plan;
}

inline LaunchPlan plan_bias_backward_split(index_t channels, index_t splits) {
  LaunchPlan plan;
  plan.grid_x = ceil_div(channels, BiasBackwardSplit<float>::kColumns);
  plan.grid_y = splits;
  plan.threads = BiasBackwardSplit<float>::kMaxThreads;
  plan.shared_bytes = sizeof(double) * BiasBackwardSplit<float>::kMaxThreads;
  return plan;
}

// ============================================================================ launchers

namespace detail {

// The input gradient with an optional bias of length Cin (the transposed conv's forward).
template <class Runner, class T>
void conv2d_backward_input_with_bias(Runner& run, Variant variant, const Conv2dGeometry& g,
                                     const T* grad_y, const T* kernel, const T* bias, T* grad_x) {
  if (variant == Variant::Reference) {
    run("conv2d_backward_input_reference", plan_grid_stride(g.in_pixels() * g.in_channels),
        Conv2dBackwardInputReference<T>{g, grad_y, kernel, bias, grad_x});
    return;
  }
  run("conv2d_backward_input_tiled", plan_conv2d_tiled<T>(g.in_pixels(), g.in_channels),
      Conv2dImplicitGemmTiled<T, true>{g, grad_y, kernel, bias, grad_x});
}

}  // namespace detail

template <class Runner, class T>
void conv2d_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                    const T* kernel, const T* bias, T* y) {
  if (variant == Variant::Reference) {
    run("conv2d_forward_reference", plan_grid_stride(g.out_pixels() * g.out_channels),
        Conv2dForwardReference<T>{g, x, kernel, bias, y});
    return;
  }
  run("conv2d_forward_tiled", plan_conv2d_tiled<T>(g.out_pixels(), g.out_channels),
      Conv2dImplicitGemmTiled<T, false>{g, x, kernel, bias, y});
}

template <class Runner, class T>
void conv2d_backward_input(Runner& run, Variant variant, const Conv2dGeometry& g,
                           const T* grad_y, const T* kernel, T* grad_x) {
  detail::conv2d_backward_input_with_bias<Runner, T>(run, variant, g, grad_y, kernel, nullptr, grad_x);
}

template <class Runner, class T>
void conv2d_backward_kernel(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                            const T* grad_y, T* grad_kernel) {
  const index_t K = g.patch_size();
  if (variant == Variant::Reference) {
    run("conv2d_backward_kernel_reference", plan_grid_stride(K * g.out_channels),
        Conv2dBackwardKernelReference<T>{g, x, grad_y, grad_kernel});
    return;
  }
  using Tiles = Conv2dTiles<T>;
  const index_t tiles = ceil_div(K, Tiles::BM) * ceil_div(g.out_channels, Tiles::BN);
  index_t splits = 1;
  const index_t rows_per_split = plan_splits(g.out_pixels(), Tiles::BK, tiles, &splits);
  T* partial = splits > 1
                   ? static_cast<T*>(run.workspace(std::size_t(splits * K * g.out_channels) * sizeof(T)))
                   : grad_kernel;
  run("conv2d_backward_kernel_split", plan_conv2d_backward_kernel_split<T>(g, splits),
      Conv2dBackwardKernelSplit<T>{g, x, grad_y, partial, rows_per_split});
  if (splits > 1)
    run("conv2d_backward_kernel_reduce_splits", plan_grid_stride(K * g.out_channels),
        ReduceSplits<T, T>{partial, splits, K * g.out_channels, grad_kernel});
}

template <class Runner, class T>
void bias_backward(Runner& run, Variant variant, index_t rows, index_t channels,
                   const T* grad_y, T* grad_bias) {
  if (channels <= 0) return;
  if (variant == Variant::Reference) {
    run("bias_backward_reference", plan_grid_stride(channels),
        BiasBackwardReference<T>{rows, channels, grad_y, grad_bias});
    return;
  }
  const index_t column_tiles = ceil_div(channels, BiasBackwardSplit<T>::kColumns);
  // Splits of at least 256 rows: fewer rows per block would cost more in the second pass
  // than they save.
  index_t splits = 1;
  const index_t rows_per_split = plan_splits(rows, 256, column_tiles, &splits);
  double* partial =
      splits > 1 ? static_cast<double*>(run.workspace(std::size_t(splits * channels) * sizeof(double)))
                 : nullptr;
  run("bias_backward_split", plan_bias_backward_split(channels, splits),
      BiasBackwardSplit<T>{rows, channels, rows_per_split, grad_y, partial, grad_bias});
  if (splits > 1)
    run("bias_backward_reduce_splits", plan_grid_stride(channels),
        ReduceSplits<T, double>{partial, splits, channels, grad_bias});
}

template <class Runner, class T>
void conv2d_transpose_forward(Runner& run, Variant variant, const Conv2dGeometry& g, const T* x,
                              const T* kernel, const T* bias, T* y) {
  detail::conv2d_backward_input_with_bias<Runner, T>(run, variant, g, x, kernel, bias, y);
}

template <class Runner, class T>
void conv2d_transpose_backward_input(Runner& run, Variant variant, const Conv2dGeometry& g,
                                     const T* grad_y, const T* kernel, T* grad_x) {
  conv2d_forward<Runner, T>(run, variant, g, grad_y, kernel, nullptr, grad_x);
}

template <class Runner, class T>
void conv2d_transpose_backward_kernel(Runner& run, Variant variant, const Conv2dGeometry& g,
                                      const T* x, const T* grad_y, T* grad_kernel) {
  conv2d_backward_kernel<Runner, T>(run, variant, g, grad_y, x, grad_kernel);
}

}  // namespace convlab::cuda
