// Execution-space markers for code that both nvcc and the host compiler build.
//
//   CONVLAB_HD      small functions (geometry arithmetic) callable on the host and on
//                   the GPU: __host__ __device__ under nvcc, nothing under g++.
//   CONVLAB_DEVICE  the body of a CUDA block program: __device__ under nvcc, so it is
//                   compiled for the GPU; under g++ an ordinary inline function that the
//                   host executor (cuda/exec.h) runs.
#pragma once

//   CONVLAB_UNROLL  unroll the next loop (its trip count must be a compile-time
//                   constant where registers are indexed by it); a hint to g++ only.
#ifdef __CUDACC__
#define CONVLAB_HD __host__ __device__ __forceinline__
#define CONVLAB_DEVICE __device__ __forceinline__
#define CONVLAB_UNROLL _Pragma("unroll")
#else
#define CONVLAB_HD inline
#define CONVLAB_DEVICE inline
#define CONVLAB_UNROLL _Pragma("GCC unroll 16")
#endif
