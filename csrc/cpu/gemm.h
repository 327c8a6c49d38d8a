// GEMM: C[M x N] = (C +) A[M x K] * B[K x N] (+ column bias), cache-blocked and vectorized.
//
// This is the engine under conv2d and its backward passes. It follows the classic
// Goto/BLIS structure:
//
//   for jc in N by NC:                 B block (KC x NC) packed once, shared by threads
//     for pc in K by KC:
//       pack B[pc, jc] into NR-wide micro-panels
//       parallel for ic in M by MC:    each thread packs its own A block (MC x KC)
//         for jr in NC by NR:          into MR-tall micro-panels, then
//           for ir in MC by MR:        the micro-kernel keeps an MR x NR tile of C in
//             micro_kernel(...)        registers while it streams KC steps of A and B
//
// The operands are never read directly: the caller passes two packing functions, so A
// can be an im2col matrix that never exists in memory (implicit GEMM), a transposed
// view, or a plain matrix. Packed layouts:
//   A block: ceil(mc / MR) panels; panel p holds, for k = 0..kc-1, the MR values
//            A[i0 + p*MR + 0..MR-1, k0 + k] (rows past mc are zero).
//   B block: ceil(nc / NR) panels; panel q holds, for k = 0..kc-1, the NR values
//            B[k0 + k, j0 + q*NR + 0..NR-1] (columns past nc are zero).
//
// Block sizes: an MR x NR float tile is 6 x 16 = 12 AVX registers of accumulators; an A
// block (MC x KC) is sized for L2, a B micro-panel (KC x NR) for L1.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <omp.h>

#include "../common/geometry.h"
#include "parallel.h"

namespace convlab::cpu {

// The vector width is the build machine's (-march=native): 64 bytes with AVX-512, 32
// otherwise. A portable build (no AVX) keeps the 32-byte layout; GCC then lowers each
// vector to SSE pairs or scalars, still correct.
#if defined(__AVX512F__)
constexpr index_t kVectorBytes = 64;
#else
constexpr index_t kVectorBytes = 32;
#endif

template <typename T>
struct GemmBlocking;
#if defined(__AVX512F__)
// 12 x 32 floats = 24 of the 32 zmm registers of accumulators; per k step 2 vector loads
// of B and 12 broadcasts of A feed 24 FMAs. B micro-panel: KC x NR x 4 B = 32 KiB (L1d
// is 48 KiB); A block: MC x KC x 4 B = 144 KiB (L2 is 1 MiB).
template <>
struct GemmBlocking<float> {
  static constexpr index_t MR = 12, NR = 32, MC = 144, KC = 256, NC = 3072;
};
template <>
struct GemmBlocking<double> {
  static constexpr index_t MR = 12, NR = 16, MC = 120, KC = 192, NC = 2048;
};
#else
template <>
struct GemmBlocking<float> {
  static constexpr index_t MR = 6, NR = 16, MC = 120, KC = 256, NC = 3072;
};
template <>
struct GemmBlocking<double> {
  static constexpr index_t MR = 6, NR = 8, MC = 96, KC = 192, NC = 2048;
};
#endif

// Computes one MR x NR tile: c[0..mr, 0..nr] = (accumulate ? c : 0) + a_panel * b_panel
// (+ bias[0..nr] when bias is not null), over kc steps.
template <typename T>
void gemm_micro_kernel(index_t kc, const T* a_panel, const T* b_panel, T* c, index_t ldc,
                       index_t mr, index_t nr, bool accumulate, const T* bias);

// 64-byte aligned scratch buffer (packed panels are read with vector loads).
template <typename T>
struct AlignedBuffer {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data;
  explicit AlignedBuffer(index_t count) {
    std::size_t bytes = ((std::size_t(count) * sizeof(T) + 63) / 64) * 64;
    data.reset(static_cast<T*>(std::aligned_alloc(64, bytes ? bytes : 64)));
    if (!data) throw std::bad_alloc();
  }
  T* get() const { return data.get(); }
};

// Packs rows [i0, i0+mc) x cols [k0, k0+kc) of a matrix whose element (i, k) is at
// a[i * row_stride + k * col_stride].
template <typename T>
struct StridedPackA {
  const T* a;
  index_t row_stride, col_stride;
  void operator()(T* dst, index_t i0, index_t mc, index_t k0, index_t kc) const {
    constexpr index_t MR = GemmBlocking<T>::MR;
    for (index_t p = 0; p < mc; p += MR) {
      const index_t rows = std::min(MR, mc - p);
      T* panel = dst + p * kc;
      if (col_stride == 1) {
        // Rows are contiguous: read each row once, scatter into the panel.
        for (index_t ii = 0; ii < rows; ++ii) {
          const T* src = a + (i0 + p + ii) * row_stride + k0;
          for (index_t k = 0; k < kc; ++k) panel[k * MR + ii] = src[k];
        }
      } else {
        for (index_t k = 0; k < kc; ++k)
          for (index_t ii = 0; ii < rows; ++ii)
            panel[k * MR + ii] = a[(i0 + p + ii) * row_stride + (k0 + k) * col_stride];
      }
      for (index_t ii = rows; ii < MR; ++ii)
        for (index_t k = 0; k < kc; ++k) panel[k * MR + ii] = T(0);
    }
  }
};

// Packs rows [k0, k0+kc) x cols [j0, j0+nc) of a matrix whose element (k, j) is at
// b[k * row_stride + j * col_stride].
template <typename T>
struct StridedPackB {
  const T* b;
  index_t row_stride, col_stride;
  void operator()(T* dst, index_t k0, index_t kc, index_t j0, index_t nc) const {
    constexpr index_t NR = GemmBlocking<T>::NR;
    const index_t panels = (nc + NR - 1) / NR;
#pragma omp parallel for schedule(static) if (panels > 4 && worth_parallel(kc * nc) && !omp_in_parallel())
    for (index_t q = 0; q < panels; ++q) {
      const index_t cols = std::min(NR, nc - q * NR);
      T* panel = dst + q * NR * kc;
      for (index_t k = 0; k < kc; ++k) {
        const T* src = b + (k0 + k) * row_stride + (j0 + q * NR) * col_stride;
        T* out = panel + k * NR;
        if (col_stride == 1) {
          for (index_t jj = 0; jj < cols; ++jj) out[jj] = src[jj];
        } else {
          for (index_t jj = 0; jj < cols; ++jj) out[jj] = src[jj * col_stride];
        }
        for (index_t jj = cols; jj < NR; ++jj) out[jj] = T(0);
      }
    }
  }
};

// C (M x N, row stride ldc) = (accumulate ? C : 0) + A * B (+ bias[j] on every row).
// Runs on all OpenMP threads unless called from inside a parallel region.
template <typename T, typename PackA, typename PackB>
void gemm(index_t M, index_t N, index_t K, const PackA& pack_a, const PackB& pack_b, T* C,
          index_t ldc, bool accumulate, const T* bias = nullptr) {
  using B = GemmBlocking<T>;
  constexpr index_t MR = B::MR, NR = B::NR, MC = B::MC, KC = B::KC, NC = B::NC;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // empty reduction: C = (accumulate ? C : 0) + bias
    for (index_t i = 0; i < M; ++i)
      for (index_t j = 0; j < N; ++j)
        C[i * ldc + j] = (accumulate ? C[i * ldc + j] : T(0)) + (bias ? bias[j] : T(0));
    return;
  }
  // Small products stay on the calling thread (see parallel.h); so do GEMMs called from
  // inside a parallel region, which already has its threads.
  const bool nested = omp_in_parallel() || !worth_parallel(M * N * std::min(K, KC) / 8);
  const int threads = nested ? 1 : omp_get_max_threads();
  AlignedBuffer<T> b_block(std::min(KC, K) * ((std::min(NC, N) + NR - 1) / NR) * NR);
  for (index_t jc = 0; jc < N; jc += NC) {
    const index_t nc = std::min(NC, N - jc);
    const index_t n_panels = (nc + NR - 1) / NR;
    for (index_t pc = 0; pc < K; pc += KC) {
      const index_t kc = std::min(KC, K - pc);
      const bool first = pc == 0;
      pack_b(b_block.get(), pc, kc, jc, nc);
      // Work items: (A block, range of B panels). Splitting the B panels as well keeps
      // both cores busy when M is small (e.g. a kernel gradient with 27 rows).
      const index_t m_blocks = (M + MC - 1) / MC;
      index_t n_split = 1;
      if (m_blocks < 2 * threads)
        n_split = std::max<index_t>(1, std::min<index_t>(n_panels / 2, (2 * threads + m_blocks - 1) / m_blocks));
      const index_t panels_per_split = (n_panels + n_split - 1) / n_split;
      const index_t items = m_blocks * n_split;
#pragma omp parallel if (!nested && items > 1)
      {
        AlignedBuffer<T> a_block(MC * kc);
        index_t packed_block = -1;
#pragma omp for schedule(dynamic, 1)
        for (index_t item = 0; item < items; ++item) {
          const index_t ib = item / n_split, split = item % n_split;
          const index_t ic = ib * MC, mc = std::min(MC, M - ic);
          if (packed_block != ib) {
            pack_a(a_block.get(), ic, mc, pc, kc);
            packed_block = ib;
          }
          const index_t q_end = std::min(n_panels, (split + 1) * panels_per_split);
          for (index_t q = split * panels_per_split; q < q_end; ++q) {
            const index_t jr = q * NR, nr = std::min(NR, nc - jr);
            const T* b_panel = b_block.get() + q * NR * kc;
            for (index_t ir = 0; ir < mc; ir += MR) {
              const index_t mr = std::min(MR, mc - ir);
              gemm_micro_kernel<T>(kc, a_block.get() + ir * kc, b_panel,
                                   C + (ic + ir) * ldc + jc + jr, ldc, mr, nr,
                                   accumulate || !first, first && bias ? bias + jc + jr : nullptr);
            }
          }
        }
      }
    }
  }
}

}  // namespace convlab::cpu
