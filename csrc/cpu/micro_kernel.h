// The register tile shared by every GEMM-like micro-kernel of the CPU backend.
//
// A micro-kernel keeps an MR x NR tile of C in vector registers (acc[MR][2], two vectors
// per row), streams the reduction through it, and finishes with store_tile: add the bias,
// add what C already holds when accumulating, and write the tile (vector stores for full
// rows, scalar ones at C's ragged right edge). GCC's vector extension types are used
// instead of intrinsics: they read like arrays of numbers and compile to the build
// machine's widest registers (see kVectorBytes in gemm.h).
#pragma once

#include <cstring>

#include "gemm.h"

namespace convlab::cpu {

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(kVectorBytes)));
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(kVectorBytes)));
};

template <typename T>
using Vec = typename Simd<T>::V;

template <typename T>
constexpr index_t kLanes = index_t(sizeof(Vec<T>) / sizeof(T));

template <typename T>
inline Vec<T> load_vector(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store_vector(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}

// c[0..mr, 0..nr] = (accumulate ? c : 0) + acc (+ bias[0..nr] when bias is not null).
template <typename T>
inline void store_tile(Vec<T> (&acc)[GemmBlocking<T>::MR][2], T* c, index_t ldc, index_t mr,
                       index_t nr, bool accumulate, const T* bias) {
  constexpr index_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR, W = kLanes<T>;
  static_assert(NR == 2 * W, "a tile row is two vectors");
  if (bias) {
    T padded[NR] = {};
    std::memcpy(padded, bias, sizeof(T) * std::size_t(nr));
    const Vec<T> bias0 = load_vector(padded), bias1 = load_vector(padded + W);
    for (index_t i = 0; i < MR; ++i) {
      acc[i][0] += bias0;
      acc[i][1] += bias1;
    }
  }
  if (nr == NR) {  // full-width rows: vector stores
    for (index_t i = 0; i < mr; ++i) {
      T* row = c + i * ldc;
      if (accumulate) {
        acc[i][0] += load_vector(row);
        acc[i][1] += load_vector(row + W);
      }
      store_vector(row, acc[i][0]);
      store_vector(row + W, acc[i][1]);
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

}  // namespace convlab::cpu
