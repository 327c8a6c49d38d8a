// Indirect convolution (see indirect_conv.h): the drivers and their micro-kernels.
//
// Blocking. A tile is MR output pixels x NR channels (12 x 32 floats with AVX-512). The
// forward pass hands each thread (block of 8 tiles, one B panel) work items. The B panel
// (K x NR) is walked in groups of taps whose slice fits in 24 KiB of the 48 KiB L1d
// (e.g. 2 kernel rows of a 3x3x32 patch: 2 x 96 x 32 x 4 B); all 8 tiles stream their
// pixels' patches past one slice, accumulating in C, before the next slice is loaded. The kernel
// gradient reduces over pixels in chunks whose packed dy (chunk x NR per panel) stays in
// L2; each thread reduces its own range of pixels into its own copy of the gradient and
// the copies are added at the end.
#include "indirect_conv.h"

#include <algorithm>
#include <cstring>

#include "micro_kernel.h"

namespace convlab::cpu {

template <typename T>
PaddedImage<T> pad_image(const T* x, index_t batch, index_t h, index_t w, index_t c, index_t top,
                         index_t left, index_t height, index_t width) {
  PaddedImage<T> image;
  image.batch = batch;
  image.height = height;
  image.width = width;
  image.channels = c;
  if (top == 0 && left == 0 && height == h && width == w) {
    image.data = x;
    return image;
  }
  // The padded copy lives in a buffer kept by the calling thread from one call to the
  // next: a fresh allocation of tens of MiB costs a page fault per 4 KiB (about a
  // quarter of a backward pass on the books' second layer). Each kernel pads at most one
  // tensor at a time, so one buffer per thread and element type suffices.
  thread_local std::vector<T> buffer;
  const index_t total = batch * height * width * c;
  if (index_t(buffer.size()) < total) {
    buffer.clear();
    buffer.shrink_to_fit();
    buffer.resize(std::size_t(total));
  }
  T* out = buffer.data();
  const index_t row_elements = width * c;
#pragma omp parallel for schedule(static) if (worth_parallel(total))
  for (index_t row = 0; row < batch * height; ++row) {
    const index_t n = row / height, ih = row % height - top;
    T* dst = out + row * row_elements;
    if (ih < 0 || ih >= h) {
      std::fill_n(dst, row_elements, T(0));
      continue;
    }
    std::fill_n(dst, left * c, T(0));
    std::memcpy(dst + left * c, x + (n * h + ih) * w * c, sizeof(T) * std::size_t(w * c));
    std::fill(dst + (left + w) * c, dst + row_elements, T(0));
  }
  image.data = out;
  return image;
}

namespace {

// The taps the micro-kernel walks and where each starts relative to a pixel's row
// pointer. With dilation_w = 1 a kernel row (kw, ci) is one contiguous run.
struct TapWalk {
  std::vector<index_t> offsets;
  index_t depth = 0;
  template <typename T>
  TapWalk(const PaddedImage<T>& in, const IndirectConv& conv) {
    const index_t C = in.channels, Wp = in.width;
    if (conv.dilation_w == 1) {
      depth = conv.kernel_width * C;
      for (index_t kh = 0; kh < conv.kernel_height; ++kh)
        offsets.push_back(kh * conv.dilation_h * Wp * C);
    } else {
      depth = C;
      for (index_t kh = 0; kh < conv.kernel_height; ++kh)
        for (index_t kw = 0; kw < conv.kernel_width; ++kw)
          offsets.push_back((kh * conv.dilation_h * Wp + kw * conv.dilation_w) * C);
    }
  }
  index_t taps() const { return index_t(offsets.size()); }
};

// Pointer to x[n, oh*stride_h, ow*stride_w, 0] in the padded input, for output pixel p.
template <typename T>
const T* pixel_row(const PaddedImage<T>& in, const IndirectConv& conv, index_t p) {
  const index_t ow = p % conv.out_width, rest = p / conv.out_width;
  const index_t oh = rest % conv.out_height, n = rest / conv.out_height;
  return in.data + ((n * in.height + oh * conv.stride_h) * in.width + ow * conv.stride_w) * in.channels;
}

}  // namespace

template <typename T>
void indirect_conv(const PaddedImage<T>& in, const IndirectConv& conv, const T* packed_b,
                   index_t cols, T* out, index_t ldc, const T* bias) {
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  constexpr index_t kTilesPerItem = 8;
  const TapWalk walk(in, conv);
  const index_t taps = walk.taps(), depth = walk.depth, K = taps * depth;
  const index_t M = in.batch * conv.out_height * conv.out_width;
  if (M <= 0 || cols <= 0) return;
  // Taps per group: a group's slice of the B panel stays in L1 (24 KiB of the 48) while
  // the item's tiles stream past it; the tiles accumulate group by group.
  const index_t group = std::max<index_t>(1, (index_t(24) << 10) / (depth * NR * index_t(sizeof(T))));
  const index_t tiles = (M + MR - 1) / MR, panels = (cols + NR - 1) / NR;
  const index_t blocks = (tiles + kTilesPerItem - 1) / kTilesPerItem, items = blocks * panels;
  const bool parallel = items > 1 && worth_parallel(M * cols * K / 8) && !omp_in_parallel();
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (index_t item = 0; item < items; ++item) {
    const index_t block = item / panels, q = item % panels;
    const index_t j0 = q * NR, nr = std::min(NR, cols - j0);
    const T* b_panel = packed_b + q * K * NR;
    const index_t tile_begin = block * kTilesPerItem, tile_end = std::min(tiles, tile_begin + kTilesPerItem);
    const T* rows[kTilesPerItem][MR];
    for (index_t tile = tile_begin; tile < tile_end; ++tile) {
      const index_t r0 = tile * MR, mr = std::min(MR, M - r0);
      for (index_t i = 0; i < MR; ++i)
        rows[tile - tile_begin][i] = pixel_row(in, conv, i < mr ? r0 + i : r0);
    }
    for (index_t t0 = 0; t0 < taps; t0 += group)
      for (index_t tile = tile_begin; tile < tile_end; ++tile) {
        const index_t r0 = tile * MR, mr = std::min(MR, M - r0);
        indirect_micro_kernel<T>(t0, std::min(taps, t0 + group), depth, rows[tile - tile_begin],
                                 walk.offsets.data(), b_panel, out + r0 * ldc + j0, ldc, mr, nr, t0 > 0,
                                 t0 == 0 && bias ? bias + j0 : nullptr);
      }
  }
}

template <typename T>
void indirect_conv_backward_kernel(const PaddedImage<T>& in, const IndirectConv& conv,
                                   const T* grad_y, index_t cols, T* grad_kernel) {
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  const index_t C = in.channels, Wp = in.width;
  const index_t K = conv.kernel_height * conv.kernel_width * C;
  const index_t P = in.batch * conv.out_height * conv.out_width;
  const index_t panels = (cols + NR - 1) / NR, tiles = (K + MR - 1) / MR;
  if (K <= 0 || cols <= 0) return;
  if (P <= 0) {
    std::fill_n(grad_kernel, K * cols, T(0));
    return;
  }
  // Offsets of the patch elements, padded to whole tiles (the padding rows read element 0
  // of the patch and are never stored).
  std::vector<index_t> offsets(std::size_t(tiles * MR), 0);
  for (index_t k = 0; k < K; ++k) {
    const index_t tap = k / C, ci = k % C;
    const index_t kh = tap / conv.kernel_width, kw = tap % conv.kernel_width;
    offsets[k] = (kh * conv.dilation_h * Wp + kw * conv.dilation_w) * C + ci;
  }
  // Pixels per chunk: the chunk's packed dy (chunk x NR per panel) within about 256 KiB.
  const index_t chunk = std::clamp<index_t>((index_t(256) << 10) / (panels * NR * index_t(sizeof(T))), 32, 1024);
  const int max_threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const index_t threads = worth_parallel(P * K * cols / 8)
                              ? std::max<index_t>(1, std::min<index_t>(max_threads, P / 128))
                              : 1;
  std::vector<std::vector<T>> partial(std::size_t(threads - 1));
#pragma omp parallel for schedule(static) num_threads(int(threads)) if (threads > 1)
  for (index_t t = 0; t < threads; ++t) {
    T* sum = grad_kernel;
    if (t > 0) {
      partial[t - 1].assign(std::size_t(K * cols), T(0));
      sum = partial[t - 1].data();
    }
    const index_t p_begin = P * t / threads, p_end = P * (t + 1) / threads;
    // dy's rows are read in place when they hold whole panels, else packed per chunk.
    const bool direct = cols % NR == 0;
    std::vector<T> packed(direct ? 0 : std::size_t(panels * chunk * NR));
    std::vector<const T*> rows(static_cast<std::size_t>(chunk));
    for (index_t p0 = p_begin; p0 < p_end; p0 += chunk) {
      const index_t pc = std::min(chunk, p_end - p0);
      for (index_t p = 0; p < pc; ++p) {
        rows[p] = pixel_row(in, conv, p0 + p);
        if (direct) continue;
        const T* dy = grad_y + (p0 + p) * cols;
        for (index_t q = 0; q < panels; ++q) {
          T* out = packed.data() + (q * pc + p) * NR;
          const index_t n = std::min(NR, cols - q * NR);
          std::memcpy(out, dy + q * NR, sizeof(T) * std::size_t(n));
          std::fill(out + n, out + NR, T(0));
        }
      }
      for (index_t tile = 0; tile < tiles; ++tile) {
        const index_t k0 = tile * MR, mr = std::min(MR, K - k0);
        for (index_t q = 0; q < panels; ++q) {
          const T* b = direct ? grad_y + p0 * cols + q * NR : packed.data() + q * pc * NR;
          indirect_transposed_micro_kernel<T>(pc, rows.data(), offsets.data() + k0, b, direct ? cols : NR,
                                              sum + k0 * cols + q * NR, cols, mr,
                                              std::min(NR, cols - q * NR), p0 > p_begin);
        }
      }
    }
    if (p_begin == p_end) std::fill_n(sum, K * cols, T(0));
  }
  for (const auto& extra : partial)
    for (index_t i = 0; i < K * cols; ++i) grad_kernel[i] += extra[i];
}

template <typename T>
void indirect_micro_kernel(index_t tap_begin, index_t tap_end, index_t depth, const T* const* rows,
                           const index_t* tap_offsets, const T* b_panel, T* c, index_t ldc,
                           index_t mr, index_t nr, bool accumulate, const T* bias) {
  using V = Vec<T>;
  constexpr index_t W = kLanes<T>;
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  V acc[MR][2];
  for (index_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V{};
  for (index_t t = tap_begin; t < tap_end; ++t) {
    const T* a[MR];
    for (index_t i = 0; i < MR; ++i) a[i] = rows[i] + tap_offsets[t];
    const T* b = b_panel + t * depth * NR;
    for (index_t d = 0; d < depth; ++d, b += NR) {
      const V b0 = load_vector(b), b1 = load_vector(b + W);
      for (index_t i = 0; i < MR; ++i) {
        acc[i][0] += a[i][d] * b0;
        acc[i][1] += a[i][d] * b1;
      }
    }
  }
  store_tile<T>(acc, c, ldc, mr, nr, accumulate, bias);
}

namespace {

// The tile's patch elements are consecutive in memory (one run of channels of one tap):
// one pointer per pixel suffices.
template <typename T>
void transposed_contiguous(index_t pixels, const T* const* rows, index_t offset, const T* b_panel, index_t b_stride,
                           Vec<T> (&acc)[GemmBlocking<T>::MR][2]) {
  using V = Vec<T>;
  constexpr index_t W = kLanes<T>;
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  for (index_t p = 0; p < pixels; ++p) {
    const T* a = rows[p] + offset;
    const V b0 = load_vector(b_panel + p * b_stride), b1 = load_vector(b_panel + p * b_stride + W);
    for (index_t i = 0; i < MR; ++i) {
      acc[i][0] += a[i] * b0;
      acc[i][1] += a[i] * b1;
    }
  }
}

template <typename T>
void transposed_gather(index_t pixels, const T* const* rows, const index_t* offsets,
                       const T* b_panel, index_t b_stride, Vec<T> (&acc)[GemmBlocking<T>::MR][2]) {
  using V = Vec<T>;
  constexpr index_t W = kLanes<T>;
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  index_t off[MR];
  for (index_t i = 0; i < MR; ++i) off[i] = offsets[i];
  for (index_t p = 0; p < pixels; ++p) {
    const T* a = rows[p];
    const V b0 = load_vector(b_panel + p * b_stride), b1 = load_vector(b_panel + p * b_stride + W);
    for (index_t i = 0; i < MR; ++i) {
      acc[i][0] += a[off[i]] * b0;
      acc[i][1] += a[off[i]] * b1;
    }
  }
}

}  // namespace

template <typename T>
void indirect_transposed_micro_kernel(index_t pixels, const T* const* rows, const index_t* offsets,
                                      const T* b_panel, index_t b_stride, T* c, index_t ldc,
                                      index_t mr, index_t nr, bool accumulate) {
  using V = Vec<T>;
  constexpr index_t MR = GemmBlocking<T>::MR;
  V acc[MR][2];
  for (index_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V{};
  bool contiguous = true;
  for (index_t i = 1; i < MR; ++i) contiguous = contiguous && offsets[i] == offsets[0] + i;
  if (contiguous) {
    transposed_contiguous<T>(pixels, rows, offsets[0], b_panel, b_stride, acc);
  } else {
    transposed_gather<T>(pixels, rows, offsets, b_panel, b_stride, acc);
  }
  store_tile<T>(acc, c, ldc, mr, nr, accumulate, nullptr);
}

#define CONVLAB_INSTANTIATE(T)                                                                    \
  template PaddedImage<T> pad_image<T>(const T*, index_t, index_t, index_t, index_t, index_t,     \
                                       index_t, index_t, index_t);                                \
  template void indirect_conv<T>(const PaddedImage<T>&, const IndirectConv&, const T*, index_t,   \
                                 T*, index_t, const T*);                                          \
  template void indirect_conv_backward_kernel<T>(const PaddedImage<T>&, const IndirectConv&,      \
                                                 const T*, index_t, T*);                          \
  template void indirect_micro_kernel<T>(index_t, index_t, index_t, const T* const*,              \
                                         const index_t*, const T*, T*, index_t, index_t, index_t, \
                                         bool, const T*);                                         \
  template void indirect_transposed_micro_kernel<T>(index_t, const T* const*, const index_t*,     \
                                                    const T*, index_t, T*, index_t, index_t, index_t, bool);
CONVLAB_INSTANTIATE(float)
CONVLAB_INSTANTIATE(double)
#undef CONVLAB_INSTANTIATE

}  // namespace convlab::cpu
