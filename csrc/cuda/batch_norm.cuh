// Batch normalization on the GPU: training forward, inference forward, backward.
// The CPU twin (cpu/batch_norm.cpp) is the oracle; the formulas and the numerics are its.
// x is viewed as a (rows, channels) matrix, channels last (rows = batch*height*width for
// NHWC), and every statistic is per channel over all rows (M = rows):
//
//   training   with a shift K[c] = x[0, c] (one sample of the channel):
//              mean = K + S1/M,  var = max(S2/M - (S1/M)^2, 0)   (biased, as Keras)
//                where S1 = sum_r (x - K), S2 = sum_r (x - K)^2, summed in double
//              y = (x - center) * scale + offset  with center = mean rounded to T,
//                scale = gamma / sqrt(var + eps), offset = beta - (mean - center) * scale
//              moving = moving * momentum + batch statistic * (1 - momentum)  (in place)
//   inference  y = (x - moving_mean) * (gamma / sqrt(moving_var + eps)) + beta
//   backward   with K = batch_mean, inv_std = 1/sqrt(var + eps), the sums
//              D = sum dy, E = sum dy*(x - K), R = sum (x - K) / M (what rounding the
//              mean to T lost):
//              grad_beta = D,  grad_gamma = (E - R*D) * inv_std,  k = inv_std*grad_gamma/M
//              grad_x = a * (dy - b - (x - K) * k),  a = gamma*inv_std,  b = D/M - R*k
//   gamma / beta may be null (1 and 0), and so may grad_gamma / grad_beta (not written).
// The shifted sums lose about log2(1 + (mean - K)^2 / var) bits instead of the
// log2(1 + mean^2 / var) of E[x^2] - E[x]^2, so data with |mean| >> std (1e4 + noise)
// keeps its variance. Every sum runs in double, in a fixed order (no atomics).
//
// Each pass is a per-channel reduction over the rows (statistics), a per-channel step
// that turns the sums into statistics and coefficients (T, in a workspace), and an
// element-wise pass.
//
// Variants:
//   reference  the reduction is one thread per channel adding the rows in order; the
//              element-wise pass one thread per element of a flat grid-stride loop
//              (inference: the per-channel coefficients are one small program, shared
//              by both variants).
//   fast       the reduction reads x coalesced and in parallel over the rows: a block
//              (chunk of width = min(C, 32) channels, row split s) gives thread t channel
//              t % width and row slot t / width (256 / width slots, so a small C still
//              fills the warps), each thread sums its rows r = slot, slot + slots, ...
//              of the split in double, then one thread per channel adds the slots in
//              order (shared: terms * 256 doubles, at most 6 KiB) and writes the split's
//              partial sums to a workspace; a second program adds the splits in order
//              s = 0, 1, ... (a fixed split count from the shape: ~1024+ rows each, at
//              most 2048 blocks) and computes the coefficients. The element-wise pass
//              gives each thread one channel (t % width, width = min(C, 256)) across a
//              grid-stride loop over rows: per-channel coefficients load once, and a
//              warp still reads consecutive addresses.
#pragma once

#include <cmath>

#include "kernels.h"

namespace convlab::cuda {
namespace batch_norm_detail {

// The fast reduction's block: 256 threads over up to 32 channels.
constexpr int kReduceThreads = 256;
constexpr index_t kReduceWidth = 32;
// Rows a split should have at least, and the blocks the reduction aims for.
constexpr index_t kRowsPerSplit = 1024;
constexpr index_t kReduceBlocks = 2048;

CONVLAB_HD index_t reduce_width(index_t channels) {
  return channels < kReduceWidth ? channels : kReduceWidth;
}

// The number of row splits of the fast reduction: a function of the shape only, so the
// order of the sums (and the bits of the result) do not depend on the device.
inline index_t row_splits(index_t rows, index_t channels) {
  const index_t chunks = ceil_div(channels, reduce_width(channels));
  index_t splits = ceil_div(kReduceBlocks, chunks);
  const index_t by_rows = ceil_div(rows, kRowsPerSplit);
  if (splits > by_rows) splits = by_rows;
  if (splits > kMaxGridYZ) splits = kMaxGridYZ;
  return splits < 1 ? 1 : splits;
}

// The element-wise pass's grid: x over groups of rows (grid-stride), y over channel chunks.
inline LaunchPlan plan_rows_channels(index_t rows, index_t channels) {
  LaunchPlan plan;
  plan.threads = 256;
  const index_t width = channels < plan.threads ? channels : plan.threads;
  const index_t slots = plan.threads / width;
  const index_t groups = ceil_div(rows, slots);
  plan.grid_x = groups < 1 ? 1 : (groups > kGridStrideMaxBlocks ? kGridStrideMaxBlocks : groups);
  const index_t chunks = ceil_div(channels, width);
  plan.grid_y = chunks > kMaxGridYZ ? kMaxGridYZ : chunks;
  return plan;
}

// One grid-stride loop per channel, for the per-channel steps.
inline LaunchPlan plan_channels(index_t channels) { return plan_grid_stride(channels); }

}  // namespace batch_norm_detail

// From the shifted sums of channel c to the batch statistics, the moving averages and the
// normalize coefficients center / scale / offset (coefficients[0, 1, 2][c] in T).
template <class T>
struct TrainingStatistics {
  index_t rows, channels;
  const T* gamma;
  const T* beta;
  T* moving_mean;
  T* moving_variance;
  double momentum, epsilon;
  T* batch_mean;
  T* batch_variance;
  T* coefficients;  // 3 * channels

  CONVLAB_HD void finish(index_t c, double shift, double sum, double sum_squares) const {
    const double M = static_cast<double>(rows);
    const double shifted_mean = sum / M;
    const double mean = shift + shifted_mean;
    const double excess = sum_squares / M - shifted_mean * shifted_mean;
    // Rounding can make the excess slightly negative; clamp it, but let a NaN through
    // (a NaN in the channel must give a NaN variance, as on the CPU).
    const double variance = excess < 0.0 ? 0.0 : excess;
    batch_mean[c] = static_cast<T>(mean);
    batch_variance[c] = static_cast<T>(variance);
    moving_mean[c] =
        static_cast<T>(static_cast<double>(moving_mean[c]) * momentum + mean * (1.0 - momentum));
    moving_variance[c] = static_cast<T>(static_cast<double>(moving_variance[c]) * momentum +
                                        variance * (1.0 - momentum));
    // The part of the mean that T cannot hold moves into the offset (see cpu/batch_norm.cpp).
    const double s = (gamma ? static_cast<double>(gamma[c]) : 1.0) / sqrt(variance + epsilon);
    const T center = static_cast<T>(mean);
    coefficients[c] = center;
    coefficients[channels + c] = static_cast<T>(s);
    coefficients[2 * channels + c] = static_cast<T>(
        (beta ? static_cast<double>(beta[c]) : 0.0) - (mean - static_cast<double>(center)) * s);
  }
};

// From the backward sums of channel c to grad_gamma, grad_beta and the coefficients
// a / b / k of grad_x (coefficients[0, 1, 2][c] in T).
template <class T>
struct BackwardStatistics {
  index_t rows, channels;
  const T* gamma;
  const T* batch_variance;
  double epsilon;
  T* grad_gamma;
  T* grad_beta;
  T* coefficients;  // 3 * channels

  CONVLAB_HD void finish(index_t c, double sum_dy, double sum_dy_shifted,
                         double sum_shifted) const {
    const double M = static_cast<double>(rows);
    const double inv_std = 1.0 / sqrt(static_cast<double>(batch_variance[c]) + epsilon);
    const double residual = sum_shifted / M;
    const double gamma_grad = (sum_dy_shifted - residual * sum_dy) * inv_std;
    if (grad_beta) grad_beta[c] = static_cast<T>(sum_dy);
    if (grad_gamma) grad_gamma[c] = static_cast<T>(gamma_grad);
    const double k = inv_std * gamma_grad / M;
    coefficients[c] = static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) * inv_std);
    coefficients[channels + c] = static_cast<T>(sum_dy / M - residual * k);
    coefficients[2 * channels + c] = static_cast<T>(k);
  }
};

// ============================================================================ reference

// Training statistics: one thread per channel, the rows in order, in double.
template <class T>
struct BatchNormStatisticsReference {
  static constexpr int kMaxThreads = 256;
  TrainingStatistics<T> stats;
  const T* x;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t C = stats.channels;
      for (index_t c = ex.block_x() * ex.threads() + t; c < C; c += ex.grid_x() * ex.threads()) {
        const double shift = static_cast<double>(x[c]);
        double sum = 0.0, sum_squares = 0.0;
        for (index_t r = 0; r < stats.rows; ++r) {
          const double d = static_cast<double>(x[r * C + c]) - shift;
          sum += d;
          sum_squares += d * d;
        }
        stats.finish(c, shift, sum, sum_squares);
      }
    });
  }
};

// Backward sums: one thread per channel, the rows in order, in double.
template <class T>
struct BatchNormBackwardReduceReference {
  static constexpr int kMaxThreads = 256;
  BackwardStatistics<T> stats;
  const T* grad_y;
  const T* x;
  const T* batch_mean;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t C = stats.channels;
      for (index_t c = ex.block_x() * ex.threads() + t; c < C; c += ex.grid_x() * ex.threads()) {
        const double shift = static_cast<double>(batch_mean[c]);
        double sum_dy = 0.0, sum_dy_shifted = 0.0, sum_shifted = 0.0;
        for (index_t r = 0; r < stats.rows; ++r) {
          const double g = static_cast<double>(grad_y[r * C + c]);
          const double d = static_cast<double>(x[r * C + c]) - shift;
          sum_dy += g;
          sum_dy_shifted += g * d;
          sum_shifted += d;
        }
        stats.finish(c, sum_dy, sum_dy_shifted, sum_shifted);
      }
    });
  }
};

// The element-wise passes, one thread per element:
//   normalize  out = (in - p0[c]) * p1[c] + p2[c]            (p = center, scale, offset)
//   backward   out = p0[c] * (dy - p1[c] - (in - mean[c]) * p2[c])   (p = a, b, k)
// (dy null selects the first).
template <class T>
struct BatchNormElementwiseReference {
  static constexpr int kMaxThreads = 256;
  index_t rows, channels;
  const T* x;
  const T* grad_y;        // backward only
  const T* center;        // normalize: center; backward: batch_mean
  const T* coefficients;  // 3 * channels
  T* out;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t count = rows * channels;
      for (index_t i = ex.block_x() * ex.threads() + t; i < count; i += ex.grid_x() * ex.threads()) {
        const index_t c = i % channels;
        const T p1 = coefficients[channels + c], p2 = coefficients[2 * channels + c];
        out[i] = grad_y ? coefficients[c] * (grad_y[i] - p1 - (x[i] - center[c]) * p2)
                        : (x[i] - center[c]) * p1 + p2;
      }
    });
  }
};

// ============================================================================ fast

// Partial per-channel sums of one row split. kTerms = 2: the training statistics
// [sum (x - K), sum (x - K)^2] with K = x[0, c]; kTerms = 3: the backward sums
// [sum dy, sum dy*(x - K), sum (x - K)] with K = batch_mean[c].
// partial[(s * kTerms + term) * channels + c]: split s's sum, added by the merge below.
template <class T, int kTerms>
struct BatchNormChannelSumsSplit {
  static constexpr int kMaxThreads = batch_norm_detail::kReduceThreads;
  index_t rows, channels, splits;
  const T* x;
  const T* grad_y;      // kTerms == 3
  const T* batch_mean;  // kTerms == 3
  double* partial;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    double* scratch = ex.template shared<double>();  // [term][thread]
    const index_t width = batch_norm_detail::reduce_width(channels);
    const index_t slots = ex.threads() / width;
    const index_t c0 = ex.block_x() * width, s = ex.block_y();  // the grid covers every chunk
    const index_t begin = rows * s / splits, end = rows * (s + 1) / splits;
    // Phase 1: thread t sums its rows and writes only scratch[term][t].
    ex.each([&](int t) {
      const index_t slot = t / width, c = c0 + t % width;
      double acc[kTerms];
      CONVLAB_UNROLL
      for (int term = 0; term < kTerms; ++term) acc[term] = 0.0;
      if (slot < slots && c < channels) {
        const double shift = static_cast<double>(kTerms == 2 ? x[c] : batch_mean[c]);
        for (index_t r = begin + slot; r < end; r += slots) {
          const double d = static_cast<double>(x[r * channels + c]) - shift;
          if (kTerms == 2) {
            acc[0] += d;
            acc[1] += d * d;
          } else {
            const double g = static_cast<double>(grad_y[r * channels + c]);
            acc[0] += g;
            acc[1] += g * d;
            acc[kTerms - 1] += d;
          }
        }
      }
      CONVLAB_UNROLL
      for (int term = 0; term < kTerms; ++term) scratch[term * ex.threads() + t] = acc[term];
    });
    ex.sync();
    // Phase 2: thread t < width adds the slots of its channel in slot order (all written
    // before the barrier) and writes its own partial sums.
    ex.each([&](int t) {
      const index_t c = c0 + t;
      if (t >= width || c >= channels) return;
      CONVLAB_UNROLL
      for (int term = 0; term < kTerms; ++term) {
        double sum = 0.0;
        for (index_t slot = 0; slot < slots; ++slot)
          sum += scratch[term * ex.threads() + slot * width + t];
        partial[(s * kTerms + term) * channels + c] = sum;
      }
    });
  }
};

// The merge: one thread per channel adds the splits' partial sums in order s = 0, 1, ...
// and finishes the statistics (training, kTerms = 2) or the gradients (backward, 3).
template <class T, int kTerms>
struct BatchNormChannelSumsMerge {
  static constexpr int kMaxThreads = 256;
  index_t splits;
  const double* partial;
  TrainingStatistics<T> training;  // kTerms == 2
  BackwardStatistics<T> backward;  // kTerms == 3
  const T* x;                      // kTerms == 2: the shift x[0, c]

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      const index_t C = kTerms == 2 ? training.channels : backward.channels;
      for (index_t c = ex.block_x() * ex.threads() + t; c < C; c += ex.grid_x() * ex.threads()) {
        double sum[kTerms];
        CONVLAB_UNROLL
        for (int term = 0; term < kTerms; ++term) sum[term] = 0.0;
        for (index_t s = 0; s < splits; ++s) {
          CONVLAB_UNROLL
          for (int term = 0; term < kTerms; ++term) sum[term] += partial[(s * kTerms + term) * C + c];
        }
        if (kTerms == 2)
          training.finish(c, static_cast<double>(x[c]), sum[0], sum[1]);
        else
          backward.finish(c, sum[0], sum[1], sum[kTerms - 1]);
      }
    });
  }
};

// Inference coefficients: scale[c] = gamma / sqrt(moving_var + eps), offset[c] = beta,
// written as coefficients[1, 2][c] (the center is moving_mean itself).
template <class T>
struct BatchNormInferenceCoefficients {
  static constexpr int kMaxThreads = 256;
  index_t channels;
  const T* gamma;
  const T* beta;
  const T* moving_variance;
  double epsilon;
  T* coefficients;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    ex.each([&](int t) {
      for (index_t c = ex.block_x() * ex.threads() + t; c < channels;
           c += ex.grid_x() * ex.threads()) {
        coefficients[channels + c] =
            static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) /
                           sqrt(static_cast<double>(moving_variance[c]) + epsilon));
        coefficients[2 * channels + c] = beta ? beta[c] : T(0);
      }
    });
  }
};

// The element-wise passes of BatchNormElementwiseReference with thread t on channel
// t % width (width = min(C, 256)) of row slot t / width: the coefficients load once per
// channel, and the rows r = slot, slot + slots, ... go by in a grid-stride loop.
template <class T>
struct BatchNormElementwiseFast {
  static constexpr int kMaxThreads = 256;
  index_t rows, channels;
  const T* x;
  const T* grad_y;
  const T* center;
  const T* coefficients;  // [1, 2] only for normalize; [0, 1, 2] for backward
  T* out;

  template <class Exec>
  CONVLAB_DEVICE void operator()(Exec& ex) const {
    // Race-free: each output element is written by the one thread that owns it.
    ex.each([&](int t) {
      const index_t width = channels < ex.threads() ? channels : ex.threads();
      const index_t slots = ex.threads() / width, slot = t / width;
      if (slot >= slots) return;
      for (index_t c = ex.block_y() * width + t % width; c < channels; c += ex.grid_y() * width) {
        const T m = center[c];
        const T p1 = coefficients[channels + c], p2 = coefficients[2 * channels + c];
        if (grad_y) {
          const T p0 = coefficients[c];
          for (index_t r = ex.block_x() * slots + slot; r < rows; r += ex.grid_x() * slots) {
            const index_t i = r * channels + c;
            out[i] = p0 * (grad_y[i] - p1 - (x[i] - m) * p2);
          }
        } else {
          for (index_t r = ex.block_x() * slots + slot; r < rows; r += ex.grid_x() * slots) {
            const index_t i = r * channels + c;
            out[i] = (x[i] - m) * p1 + p2;
          }
        }
      }
    });
  }
};

// ============================================================================ launchers

// The fast reduction: program 1 over (channel chunk, split), program 2 over channels.
template <class Runner, class T, int kTerms>
void batch_norm_reduce_fast(Runner& run, const char* split_name, const char* merge_name,
                            index_t rows, index_t channels, const T* x, const T* grad_y,
                            const T* batch_mean, const TrainingStatistics<T>& training,
                            const BackwardStatistics<T>& backward) {
  const index_t splits = batch_norm_detail::row_splits(rows, channels);
  auto* partial = static_cast<double*>(
      run.workspace(sizeof(double) * static_cast<std::size_t>(splits * kTerms * channels)));
  LaunchPlan plan;
  plan.threads = batch_norm_detail::kReduceThreads;
  plan.grid_x = ceil_div(channels, batch_norm_detail::reduce_width(channels));
  plan.grid_y = splits;
  plan.shared_bytes = sizeof(double) * kTerms * static_cast<std::size_t>(plan.threads);
  run(split_name, plan,
      BatchNormChannelSumsSplit<T, kTerms>{rows, channels, splits, x, grad_y, batch_mean, partial});
  run(merge_name, batch_norm_detail::plan_channels(channels),
      BatchNormChannelSumsMerge<T, kTerms>{splits, partial, training, backward, x});
}

template <class Runner, class T>
void batch_norm_forward_training(Runner& run, Variant variant, index_t rows, index_t channels,
                                 const T* x, const T* gamma, const T* beta, T* moving_mean,
                                 T* moving_variance, double momentum, double epsilon, T* y,
                                 T* batch_mean, T* batch_variance) {
  if (rows <= 0 || channels <= 0) return;  // the bindings reject empty inputs
  T* coefficients =
      static_cast<T*>(run.workspace(sizeof(T) * 3 * static_cast<std::size_t>(channels)));
  const TrainingStatistics<T> stats{rows,     channels, gamma,      beta,           moving_mean,
                                    moving_variance, momentum, epsilon, batch_mean, batch_variance,
                                    coefficients};
  if (variant == Variant::Reference) {
    run("batch_norm_statistics_reference", batch_norm_detail::plan_channels(channels),
        BatchNormStatisticsReference<T>{stats, x});
    run("batch_norm_normalize_reference", plan_grid_stride(rows * channels),
        BatchNormElementwiseReference<T>{rows, channels, x, nullptr, coefficients, coefficients,
                                         y});
    return;
  }
  batch_norm_reduce_fast<Runner, T, 2>(run, "batch_norm_statistics_split",
                                       "batch_norm_statistics_merge", rows, channels, x, nullptr,
                                       nullptr, stats, BackwardStatistics<T>{});
  run("batch_norm_normalize_fast", batch_norm_detail::plan_rows_channels(rows, channels),
      BatchNormElementwiseFast<T>{rows, channels, x, nullptr, coefficients, coefficients, y});
}

template <class Runner, class T>
void batch_norm_forward_inference(Runner& run, Variant variant, index_t rows, index_t channels,
                                  const T* x, const T* gamma, const T* beta,
                                  const T* moving_mean, const T* moving_variance, double epsilon,
                                  T* y) {
  if (rows <= 0 || channels <= 0) return;
  // Both variants: the per-channel coefficients first (a double division and square
  // root per element would also spill the element-wise loop), then the element-wise pass.
  T* coefficients =
      static_cast<T*>(run.workspace(sizeof(T) * 3 * static_cast<std::size_t>(channels)));
  run("batch_norm_inference_coefficients", batch_norm_detail::plan_channels(channels),
      BatchNormInferenceCoefficients<T>{channels, gamma, beta, moving_variance, epsilon,
                                        coefficients});
  if (variant == Variant::Reference) {
    run("batch_norm_normalize_reference", plan_grid_stride(rows * channels),
        BatchNormElementwiseReference<T>{rows, channels, x, nullptr, moving_mean, coefficients,
                                         y});
    return;
  }
  run("batch_norm_normalize_fast", batch_norm_detail::plan_rows_channels(rows, channels),
      BatchNormElementwiseFast<T>{rows, channels, x, nullptr, moving_mean, coefficients, y});
}

template <class Runner, class T>
void batch_norm_backward(Runner& run, Variant variant, index_t rows, index_t channels,
                         const T* grad_y, const T* x, const T* gamma, const T* batch_mean,
                         const T* batch_variance, double epsilon, T* grad_x, T* grad_gamma,
                         T* grad_beta) {
  if (rows <= 0 || channels <= 0) return;
  T* coefficients =
      static_cast<T*>(run.workspace(sizeof(T) * 3 * static_cast<std::size_t>(channels)));
  const BackwardStatistics<T> stats{rows,    channels,   gamma,     batch_variance,
                                    epsilon, grad_gamma, grad_beta, coefficients};
  if (variant == Variant::Reference) {
    run("batch_norm_backward_reduce_reference", batch_norm_detail::plan_channels(channels),
        BatchNormBackwardReduceReference<T>{stats, grad_y, x, batch_mean});
    run("batch_norm_backward_data_reference", plan_grid_stride(rows * channels),
        BatchNormElementwiseReference<T>{rows, channels, x, grad_y, batch_mean, coefficients,
                                         grad_x});
    return;
  }
  batch_norm_reduce_fast<Runner, T, 3>(run, "batch_norm_backward_reduce_split",
                                       "batch_norm_backward_reduce_merge", rows, channels, x,
                                       grad_y, batch_mean, TrainingStatistics<T>{}, stats);
  run("batch_norm_backward_data_fast", batch_norm_detail::plan_rows_channels(rows, channels),
      BatchNormElementwiseFast<T>{rows, channels, x, grad_y, batch_mean, coefficients, grad_x});
}

}  // namespace convlab::cuda
