// The GEMM micro-kernel: one MR x NR tile of C, held in vector registers.
//
// Each of the kc steps loads NR values of B (two vectors) and broadcasts MR values of A,
// doing 2*MR fused multiply-adds; with MR = 6 that is 12 accumulator vectors + 2 for B +
// 1 broadcast = 15 of the 16 AVX2 registers, so nothing spills. GCC's vector extension
// types are used instead of intrinsics: they read like arrays of numbers, compile to
// AVX2/FMA with -march=native, and to SSE pairs (or scalars) on portable builds.
#include <cstring>

#include "gemm.h"

namespace convlab::cpu {
namespace {

template <typename T>
struct Vector;
template <>
struct Vector<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vector<double> {
  typedef double type __attribute__((vector_size(32)));
};

}  // namespace

template <typename T>
void gemm_micro_kernel(index_t kc, const T* __restrict a_panel, const T* __restrict b_panel,
                       T* __restrict c, index_t ldc, index_t mr, index_t nr, bool accumulate,
                       const T* bias) {
  using V = typename Vector<T>::type;
  constexpr index_t W = sizeof(V) / sizeof(T);
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  static_assert(NR == 2 * W, "the micro-kernel holds two vectors per row of the tile");

  V acc[MR][2];
  for (index_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V{};
  for (index_t k = 0; k < kc; ++k) {
    V b0, b1;
    std::memcpy(&b0, b_panel + k * NR, sizeof(V));
    std::memcpy(&b1, b_panel + k * NR + W, sizeof(V));
    const T* a = a_panel + k * MR;
    for (index_t i = 0; i < MR; ++i) {
      acc[i][0] += a[i] * b0;
      acc[i][1] += a[i] * b1;
    }
  }

  if (bias) {
    V bias0{}, bias1{};
    if (nr == NR) {
      std::memcpy(&bias0, bias, sizeof(V));
      std::memcpy(&bias1, bias + W, sizeof(V));
    } else {
      T tmp[NR] = {};
      for (index_t j = 0; j < nr; ++j) tmp[j] = bias[j];
      std::memcpy(&bias0, tmp, sizeof(V));
      std::memcpy(&bias1, tmp + W, sizeof(V));
    }
    for (index_t i = 0; i < MR; ++i) {
      acc[i][0] += bias0;
      acc[i][1] += bias1;
    }
  }

  if (nr == NR) {  // full-width rows: vector stores
    for (index_t i = 0; i < mr; ++i) {
      T* row = c + i * ldc;
      if (accumulate) {
        V c0, c1;
        std::memcpy(&c0, row, sizeof(V));
        std::memcpy(&c1, row + W, sizeof(V));
        acc[i][0] += c0;
        acc[i][1] += c1;
      }
      std::memcpy(row, &acc[i][0], sizeof(V));
      std::memcpy(row + W, &acc[i][1], sizeof(V));
    }
  } else {  // ragged right edge of C
    T tile[MR][NR];
    std::memcpy(tile, acc, sizeof(tile));
    for (index_t i = 0; i < mr; ++i) {
      T* row = c + i * ldc;
      for (index_t j = 0; j < nr; ++j) row[j] = (accumulate ? row[j] : T(0)) + tile[i][j];
    }
  }
}

template void gemm_micro_kernel<float>(index_t, const float*, const float*, float*, index_t,
                                       index_t, index_t, bool, const float*);
template void gemm_micro_kernel<double>(index_t, const double*, const double*, double*,
                                        index_t, index_t, index_t, bool, const double*);

}  // namespace convlab::cpu
