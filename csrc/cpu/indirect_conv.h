// Indirect convolution: conv2d as a GEMM whose A operand is never packed.
//
// The blocked GEMM of gemm.h copies (packs) every block of A before its micro-kernel
// reads it. For a conv, A is the im2col matrix, and packing it costs a load and a
// strided store per element: as much time as the multiply-adds themselves when the
// GEMM is thin (N = 32 or 64 output channels, the books' shapes), since each packed
// element then feeds only N / NR micro-kernel calls. Here the micro-kernel instead reads
// each output pixel's patch straight from the input, through one pointer per pixel and
// one offset per kernel tap:
//
//   A[pixel, (kh, kw, ci)] = row(pixel)[offset(kh, kw) + ci]
//   row(pixel)             = &x[n, oh*stride_h, ow*stride_w, 0]        (in the padded x)
//   offset(kh, kw)         = (kh*dilation_h*width + kw*dilation_w) * channels
//
// With dilation_w = 1 the kw taps of one kernel row are adjacent in NHWC memory, so a
// kernel row is a single run of kernel_width*channels numbers: a 3x3 conv on 3 channels
// reads 3 runs of 9, not 9 runs of 3. The input is copied once into a zero-bordered
// buffer when the conv pads, so that no tap ever needs a bounds check. B (the kernel) is
// small and is packed once per call.
//
// The kernel gradient is the same idea transposed: dkernel = A^T * dy, a reduction over
// pixels in which each pixel contributes row(pixel)[offset(k)] for the MR patch
// elements k of a tile, times NR consecutive output channels of dy (packed per chunk of
// pixels, as dy's rows are long).
//
// The input gradient at stride 1 is a conv of the zero-padded dy with the kernel turned
// by 180 degrees and its channel axes swapped, so it takes the same path; see
// conv2d.cpp for the other strides and for convs with few input channels.
#pragma once

#include <vector>

#include "../common/geometry.h"
#include "gemm.h"

namespace convlab::cpu {

// An NHWC tensor as a conv reads it: `data` has extents (batch, height, width,
// channels), already including the zero border the conv needs.
template <typename T>
struct PaddedImage {
  const T* data = nullptr;
  index_t batch = 0, height = 0, width = 0, channels = 0;
};

// x (batch, h, w, c) placed at row `top`, column `left` of a zero image of extents
// (batch, height, width, c); no copy when the two are the same. Requires
// height >= top + h and width >= left + w. The copy is held in a buffer of the calling
// thread that the next pad_image of the same element type reuses: use the result
// before padding another tensor.
template <typename T>
PaddedImage<T> pad_image(const T* x, index_t batch, index_t h, index_t w, index_t c, index_t top,
                         index_t left, index_t height, index_t width);

// How the indirect conv walks its input: the output extents and the window.
struct IndirectConv {
  index_t out_height = 0, out_width = 0;
  index_t kernel_height = 0, kernel_width = 0;
  index_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
};

// Whether padding x for a conv costs a reasonable amount of memory (explicit paddings
// may be far larger than the image; such convs keep the unpadded GEMM path).
inline bool padding_is_affordable(index_t original_elements, index_t padded_elements) {
  return padded_elements <= 4 * original_elements + (index_t(1) << 20);
}

// Packs B (rows x cols, element (k, j) = get(k, j)) into NR-wide panels: panel q holds,
// for k = 0..rows-1, the NR values B[k, q*NR + 0..NR-1] (zero past cols).
template <typename T, typename Get>
std::vector<T> pack_panels(index_t rows, index_t cols, const Get& get) {
  constexpr index_t NR = GemmBlocking<T>::NR;
  const index_t panels = (cols + NR - 1) / NR;
  std::vector<T> packed(std::size_t(panels * rows * NR));
#pragma omp parallel for schedule(static) if (worth_parallel(rows * cols) && !omp_in_parallel())
  for (index_t k = 0; k < rows; ++k)
    for (index_t q = 0; q < panels; ++q) {
      T* out = packed.data() + (q * rows + k) * NR;
      for (index_t jj = 0; jj < NR; ++jj) {
        const index_t j = q * NR + jj;
        out[jj] = j < cols ? get(k, j) : T(0);
      }
    }
  return packed;
}

// out[pixel, j] = (bias ? bias[j] : 0) + sum_k A[pixel, k] * B[k, j] for every output
// pixel (n, oh, ow), A as in the file comment, B packed by pack_panels with
// K = kernel_height*kernel_width*channels rows (in (kh, kw, ci) order) and `cols` columns.
// Row stride of out: ldc.
template <typename T>
void indirect_conv(const PaddedImage<T>& in, const IndirectConv& conv, const T* packed_b,
                   index_t cols, T* out, index_t ldc, const T* bias);

// grad_kernel[k, j] = sum over pixels of A[pixel, k] * grad_y[pixel, j] (overwrites;
// grad_y has `cols` channels).
template <typename T>
void indirect_conv_backward_kernel(const PaddedImage<T>& in, const IndirectConv& conv,
                                   const T* grad_y, index_t cols, T* grad_kernel);

// The micro-kernels (indirect_conv.cpp).
// c = (accumulate ? c : 0) + sum over taps t in [tap_begin, tap_end), d < depth of
//     rows[i][tap_offsets[t] + d] * b_panel[(t*depth + d)*NR + j]   (+ bias when not null)
template <typename T>
void indirect_micro_kernel(index_t tap_begin, index_t tap_end, index_t depth, const T* const* rows,
                           const index_t* tap_offsets, const T* b_panel, T* c, index_t ldc,
                           index_t mr, index_t nr, bool accumulate, const T* bias);
// c = (accumulate ? c : 0) + sum over p < pixels of rows[p][offsets[i]] * b[p*b_stride + j]
template <typename T>
void indirect_transposed_micro_kernel(index_t pixels, const T* const* rows, const index_t* offsets,
                                      const T* b, index_t b_stride, T* c, index_t ldc, index_t mr,
                                      index_t nr, bool accumulate);

}  // namespace convlab::cpu
