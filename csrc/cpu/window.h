// Window helpers shared by the depthwise conv and pooling kernels: which taps of a window
// land inside the input, and, for the gather-style backward passes, which (output, tap)
// pairs read each input coordinate. Index math of common/geometry.h along one axis:
// input coordinate i = o*stride - pad + k*dilation for output o and tap k.
#pragma once

#include <algorithm>
#include <vector>

#include "../common/geometry.h"

namespace convlab::cpu {

// Taps [*first, *last) of one window axis that land inside the input:
// 0 <= o*stride - pad + k*dilation < in. Empty (first >= last) for an all-padding window.
inline void taps_inside(index_t o, index_t stride, index_t pad, index_t dilation, index_t kernel,
                 index_t in, index_t* first, index_t* last) {
  const index_t start = o * stride - pad;  // input coordinate of tap 0
  *first = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  *last = start >= in ? 0 : std::min(kernel, (in - 1 - start) / dilation + 1);
}

// For each input coordinate i along one axis, the (output, tap) pairs whose window reads
// it: i = o*stride - pad + k*dilation. For a given tap k at most one output o qualifies,
// so each input coordinate has at most `kernel` pairs.
struct CoveringWindows {
  index_t kernel = 0;
  std::vector<index_t> count;     // count[i]: number of pairs for input coordinate i
  std::vector<index_t> output;    // output[i*kernel + j], j < count[i]
  std::vector<index_t> tap;       // tap[i*kernel + j]
};

inline CoveringWindows covering_windows(index_t in, index_t out, index_t kernel, index_t stride,
                                 index_t pad, index_t dilation) {
  CoveringWindows w;
  w.kernel = kernel;
  w.count.assign(in, 0);
  w.output.resize(in * kernel);
  w.tap.resize(in * kernel);
  for (index_t o = 0; o < out; ++o)
    for (index_t k = 0; k < kernel; ++k) {
      const index_t i = o * stride - pad + k * dilation;
      if (i < 0 || i >= in) continue;
      const index_t j = i * kernel + w.count[i]++;
      w.output[j] = o;
      w.tap[j] = k;
    }
  return w;
}

}  // namespace convlab::cpu
