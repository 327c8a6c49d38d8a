// The GEMM micro-kernel: one MR x NR tile of C, held in vector registers.
//
// Each of the kc steps loads NR values of B (two vectors) and broadcasts MR values of A,
// doing 2*MR fused multiply-adds; with MR = 6 that is 12 accumulator vectors + 2 for B +
// 1 broadcast = 15 of the 16 AVX2 registers, so nothing spills; with AVX-512 the tile is
// 12 x 32 (24 of 32 registers, see GemmBlocking). The tile and its store are shared with
// the indirect micro-kernels (micro_kernel.h).
#include "micro_kernel.h"

namespace convlab::cpu {

template <typename T>
void gemm_micro_kernel(index_t kc, const T* __restrict a_panel, const T* __restrict b_panel,
                       T* __restrict c, index_t ldc, index_t mr, index_t nr, bool accumulate,
                       const T* bias) {
  using V = Vec<T>;
  constexpr index_t W = kLanes<T>;
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  V acc[MR][2];
  for (index_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V{};
  for (index_t k = 0; k < kc; ++k) {
    const V b0 = load_vector(b_panel + k * NR), b1 = load_vector(b_panel + k * NR + W);
    const T* a = a_panel + k * MR;
    for (index_t i = 0; i < MR; ++i) {
      acc[i][0] += a[i] * b0;
      acc[i][1] += a[i] * b1;
    }
  }
  store_tile<T>(acc, c, ldc, mr, nr, accumulate, bias);
}

template void gemm_micro_kernel<float>(index_t, const float*, const float*, float*, index_t,
                                       index_t, index_t, bool, const float*);
template void gemm_micro_kernel<double>(index_t, const double*, const double*, double*,
                                        index_t, index_t, index_t, bool, const double*);

}  // namespace convlab::cpu
