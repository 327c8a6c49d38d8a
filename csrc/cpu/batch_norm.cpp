// Batch normalization on the CPU: training forward, inference forward, backward.
// x is viewed as a (rows, channels) matrix, rows = batch*height*width for NHWC, and every
// statistic is per channel over all rows (M = rows):
//
//   training   mean[c] = sum_r x[r, c] / M
//              var[c]  = sum_r (x[r, c] - mean[c])^2 / M            (biased, as Keras)
//              y[r, c] = gamma[c] * (x[r, c] - mean[c]) / sqrt(var[c] + epsilon) + beta[c]
//              moving  = moving * momentum + batch statistic * (1 - momentum)   (in place)
//   inference  the same y with moving_mean / moving_variance in place of mean / var
//   backward   with inv_std = 1 / sqrt(var + epsilon), xhat = (x - mean) * inv_std:
//              grad_beta[c]  = sum_r dy[r, c]
//              grad_gamma[c] = sum_r dy[r, c] * xhat[r, c]
//              grad_x[r, c]  = gamma * inv_std / M * (M*dy - grad_beta - xhat * grad_gamma)
//   gamma / beta may be null (scale=False / center=False): they are then 1 and 0.
//
// Loop order. A row is C contiguous channels, so every loop runs rows outside and
// channels inside (vectorized), and every pass streams x (and dy) once, top to bottom.
// Training forward and backward are each two passes: a per-channel reduction over the
// rows, then an element-wise pass with per-channel coefficients computed in between.
// The reductions split the rows into one contiguous block per thread; each thread sums its
// block into private per-channel accumulators and the blocks are added in thread order
// (so results repeat for a given thread count).
//
// Numerics. The sums run in double for both element types. The variance comes from one
// pass of shifted sums: with K[c] = x[0, c] (any sample of the channel works),
//     var = sum (x - K)^2 / M - (sum (x - K) / M)^2,
// which loses about log2(1 + (mean - K)^2 / var) bits to cancellation: a few bits, as a
// sample typically lies within a few standard deviations of the mean, where the unshifted
// formula loses log2(1 + mean^2 / var). Each thread adds its rows in chunks of kChunkRows
// into a chunk accumulator before folding it into its total, so rounding error grows with
// chunk + rows/chunk instead of rows.
// The mean rounded to T is off by up to half an ulp of |mean|, which matters when
// |mean| >> std (float data around 1000 with std 1: 3e-5 of the std). Neither pass lets
// that rounding through: the forward moves the part of the mean that T cannot hold into
// the per-channel offset, and the backward measures it (sum (x - batch_mean) / M, in the
// same pass as its other sums) and corrects for it.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace convlab::cpu {
namespace {

constexpr index_t kChunkRows = 256;

// Threads for a pass over `elements` values: one for small calls (see parallel.h).
int threads_for(index_t elements) {
  return worth_parallel(elements) ? omp_get_max_threads() : 1;
}

// Per-channel sums over all rows of `terms` different per-element quantities:
// sums[t*channels + c] = sum_r term_t(r, c). add_row(r, acc) adds row r's terms into the
// double accumulators acc[t*channels + c]; its channel loop is where the vectorization is.
template <typename AddRow>
void sum_over_rows(index_t rows, index_t channels, index_t terms, AddRow add_row,
                   double* sums) {
  const int threads = threads_for(rows * channels);
  const index_t width = terms * channels;
  std::vector<double> totals(static_cast<size_t>(threads) * width, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int thread = omp_get_thread_num(), team = omp_get_num_threads();
    double* total = totals.data() + static_cast<size_t>(thread) * width;
    std::vector<double> chunk_sum(width);
    const index_t begin = rows * thread / team, end = rows * (thread + 1) / team;
    for (index_t chunk = begin; chunk < end; chunk += kChunkRows) {
      std::fill(chunk_sum.begin(), chunk_sum.end(), 0.0);
      for (index_t r = chunk; r < std::min(end, chunk + kChunkRows); ++r)
        add_row(r, chunk_sum.data());
      for (index_t i = 0; i < width; ++i) total[i] += chunk_sum[i];
    }
  }
  for (index_t i = 0; i < width; ++i) {
    double sum = 0.0;
    for (int t = 0; t < threads; ++t) sum += totals[static_cast<size_t>(t) * width + i];
    sums[i] = sum;
  }
}

// y[r, c] = (x[r, c] - center[c]) * scale[c] + offset[c]: the element-wise pass shared by
// both forwards.
template <typename T>
void normalize(index_t rows, index_t channels, const T* x, const T* center, const T* scale,
               const T* offset, T* y) {
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * channels))
  for (index_t r = 0; r < rows; ++r) {
    const T* __restrict in = x + r * channels;
    T* __restrict out = y + r * channels;
#pragma omp simd
    for (index_t c = 0; c < channels; ++c) out[c] = (in[c] - center[c]) * scale[c] + offset[c];
  }
}

}  // namespace

template <typename T>
void batch_norm_forward_training(index_t rows, index_t channels, const T* x, const T* gamma,
                                 const T* beta, T* moving_mean, T* moving_variance,
                                 double momentum, double epsilon, T* y, T* batch_mean,
                                 T* batch_variance) {
  if (rows <= 0 || channels <= 0) return;  // the bindings reject empty inputs
  // The shift: the first row, one sample of every channel.
  std::vector<double> shift(channels);
  for (index_t c = 0; c < channels; ++c) shift[c] = static_cast<double>(x[c]);
  const double* K = shift.data();

  // sums = [sum (x - K) | sum (x - K)^2]
  std::vector<double> sums(2 * channels);
  sum_over_rows(
      rows, channels, 2,
      [&](index_t r, double* __restrict acc) {
        const T* __restrict in = x + r * channels;
        double* __restrict sum = acc;
        double* __restrict sum_squares = acc + channels;
#pragma omp simd
        for (index_t c = 0; c < channels; ++c) {
          const double d = static_cast<double>(in[c]) - K[c];
          sum[c] += d;
          sum_squares[c] += d * d;
        }
      },
      sums.data());

  std::vector<T> center(channels), scale(channels), offset(channels);
  const double M = static_cast<double>(rows);
  for (index_t c = 0; c < channels; ++c) {
    const double shifted_mean = sums[c] / M;
    const double mean = K[c] + shifted_mean;
    const double variance = std::max(sums[channels + c] / M - shifted_mean * shifted_mean, 0.0);
    batch_mean[c] = static_cast<T>(mean);
    batch_variance[c] = static_cast<T>(variance);
    moving_mean[c] = static_cast<T>(static_cast<double>(moving_mean[c]) * momentum +
                                    mean * (1.0 - momentum));
    moving_variance[c] = static_cast<T>(static_cast<double>(moving_variance[c]) * momentum +
                                        variance * (1.0 - momentum));
    // y = (x - mean) * s + beta, computed as (x - mean_T) * s + (beta - (mean - mean_T) * s):
    // x - mean_T is exact for x near the mean, and the part of the mean that T cannot hold
    // moves into the offset, so a float y stays accurate when |mean| >> std.
    const double s = (gamma ? static_cast<double>(gamma[c]) : 1.0) / std::sqrt(variance + epsilon);
    center[c] = batch_mean[c];
    scale[c] = static_cast<T>(s);
    offset[c] = static_cast<T>((beta ? static_cast<double>(beta[c]) : 0.0) -
                               (mean - static_cast<double>(center[c])) * s);
  }
  normalize(rows, channels, x, center.data(), scale.data(), offset.data(), y);
}

template <typename T>
void batch_norm_forward_inference(index_t rows, index_t channels, const T* x, const T* gamma,
                                  const T* beta, const T* moving_mean,
                                  const T* moving_variance, double epsilon, T* y) {
  if (rows <= 0 || channels <= 0) return;
  std::vector<T> scale(channels), offset(channels);
  for (index_t c = 0; c < channels; ++c) {
    scale[c] = static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) /
                              std::sqrt(static_cast<double>(moving_variance[c]) + epsilon));
    offset[c] = beta ? beta[c] : T(0);
  }
  normalize(rows, channels, x, moving_mean, scale.data(), offset.data(), y);
}

template <typename T>
void batch_norm_backward(index_t rows, index_t channels, const T* grad_y, const T* x,
                         const T* gamma, const T* batch_mean, const T* batch_variance,
                         double epsilon, T* grad_x, T* grad_gamma, T* grad_beta) {
  if (rows <= 0 || channels <= 0) return;
  // batch_mean is the mean of x rounded to T. It serves as the shift K, and the same pass
  // measures what the rounding lost, residual = mean(x) - K = sum (x - K) / M, so the
  // gradients use the exact mean (rounding the mean of data with |mean| >> std to float
  // would otherwise perturb grad_gamma by residual * sum(dy) * inv_std).
  std::vector<double> shift(channels);
  for (index_t c = 0; c < channels; ++c) shift[c] = static_cast<double>(batch_mean[c]);
  const double* K = shift.data();

  // sums = [sum dy | sum dy * (x - K) | sum (x - K)]
  std::vector<double> sums(3 * channels);
  sum_over_rows(
      rows, channels, 3,
      [&](index_t r, double* __restrict acc) {
        const T* __restrict dy = grad_y + r * channels;
        const T* __restrict in = x + r * channels;
        double* __restrict sum_dy = acc;
        double* __restrict sum_dy_shifted = acc + channels;
        double* __restrict sum_shifted = acc + 2 * channels;
#pragma omp simd
        for (index_t c = 0; c < channels; ++c) {
          const double g = static_cast<double>(dy[c]);
          const double d = static_cast<double>(in[c]) - K[c];
          sum_dy[c] += g;
          sum_dy_shifted[c] += g * d;
          sum_shifted[c] += d;
        }
      },
      sums.data());

  // grad_x = gamma*inv_std * (dy - grad_beta/M - (x - mean) * inv_std*grad_gamma/M)
  //        = a * (dy - b - (x - K) * k)   per channel, with x - mean = (x - K) - residual
  //   a = gamma * inv_std,  k = inv_std * grad_gamma / M,  b = grad_beta / M - residual * k
  std::vector<T> a(channels), b(channels), k(channels);
  const double M = static_cast<double>(rows);
  for (index_t c = 0; c < channels; ++c) {
    const double inv_std = 1.0 / std::sqrt(static_cast<double>(batch_variance[c]) + epsilon);
    const double residual = sums[2 * channels + c] / M;
    const double beta_grad = sums[c];
    const double gamma_grad = (sums[channels + c] - residual * beta_grad) * inv_std;
    if (grad_beta) grad_beta[c] = static_cast<T>(beta_grad);
    if (grad_gamma) grad_gamma[c] = static_cast<T>(gamma_grad);
    const double k_c = inv_std * gamma_grad / M;
    a[c] = static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) * inv_std);
    b[c] = static_cast<T>(beta_grad / M - residual * k_c);
    k[c] = static_cast<T>(k_c);
  }

#pragma omp parallel for schedule(static) num_threads(threads_for(rows * channels))
  for (index_t r = 0; r < rows; ++r) {
    const T* __restrict dy = grad_y + r * channels;
    const T* __restrict in = x + r * channels;
    T* __restrict out = grad_x + r * channels;
#pragma omp simd
    for (index_t c = 0; c < channels; ++c)
      out[c] = a[c] * (dy[c] - b[c] - (in[c] - batch_mean[c]) * k[c]);
  }
}

template void batch_norm_forward_training<float>(index_t, index_t, const float*, const float*,
                                                 const float*, float*, float*, double, double,
                                                 float*, float*, float*);
template void batch_norm_forward_training<double>(index_t, index_t, const double*,
                                                  const double*, const double*, double*,
                                                  double*, double, double, double*, double*,
                                                  double*);
template void batch_norm_forward_inference<float>(index_t, index_t, const float*, const float*,
                                                  const float*, const float*, const float*,
                                                  double, float*);
template void batch_norm_forward_inference<double>(index_t, index_t, const double*,
                                                   const double*, const double*, const double*,
                                                   const double*, double, double*);
template void batch_norm_backward<float>(index_t, index_t, const float*, const float*,
                                         const float*, const float*, const float*, double,
                                         float*, float*, float*);
template void batch_norm_backward<double>(index_t, index_t, const double*, const double*,
                                          const double*, const double*, const double*, double,
                                          double*, double*, double*);

}  // namespace convlab::cpu
