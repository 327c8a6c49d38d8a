// convlab._cpu: the CPU kernels, bound for Python, and the conv geometry every native
// module shares (Conv2dGeometry is registered here, once; the CUDA modules import this
// one first and take the same objects).
//
// The kernels are bound from the one table in kernel_table.h. The CPU backend runs each
// kernel on the calling thread's OpenMP team without the GIL; the CPU has one variant
// of each kernel. The launchers below adapt the table's calling convention (runner,
// variant, arguments) to the CPU kernels' (arguments).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bindings/kernel_table.h"
#include "common/geometry.h"
#include "cpu/kernels.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace py = pybind11;
using namespace convlab;
using bindings::Shape;
using bindings::shape_string;

namespace convlab::cpu {

// What the table hands the CPU launchers as `run`: nothing to carry.
struct CpuRunner {};

#define CONVLAB_CPU_LAUNCHER(name)                                 \
  template <class... Args>                                         \
  void name(CpuRunner&, cuda::Variant, const Args&... args) {      \
    cpu::name(args...);                                            \
  }
CONVLAB_CPU_LAUNCHER(conv2d_forward)
CONVLAB_CPU_LAUNCHER(conv2d_backward_input)
CONVLAB_CPU_LAUNCHER(conv2d_backward_kernel)
CONVLAB_CPU_LAUNCHER(bias_backward)
CONVLAB_CPU_LAUNCHER(conv2d_transpose_forward)
CONVLAB_CPU_LAUNCHER(conv2d_transpose_backward_input)
CONVLAB_CPU_LAUNCHER(conv2d_transpose_backward_kernel)
CONVLAB_CPU_LAUNCHER(depthwise_conv2d_forward)
CONVLAB_CPU_LAUNCHER(depthwise_conv2d_backward_input)
CONVLAB_CPU_LAUNCHER(depthwise_conv2d_backward_kernel)
CONVLAB_CPU_LAUNCHER(max_pool2d_forward)
CONVLAB_CPU_LAUNCHER(max_pool2d_backward)
CONVLAB_CPU_LAUNCHER(avg_pool2d_forward)
CONVLAB_CPU_LAUNCHER(avg_pool2d_backward)
CONVLAB_CPU_LAUNCHER(global_avg_pool2d_forward)
CONVLAB_CPU_LAUNCHER(global_avg_pool2d_backward)
CONVLAB_CPU_LAUNCHER(batch_norm_forward_training)
CONVLAB_CPU_LAUNCHER(batch_norm_forward_inference)
CONVLAB_CPU_LAUNCHER(batch_norm_backward)
#undef CONVLAB_CPU_LAUNCHER

}  // namespace convlab::cpu

namespace {

struct CpuBackend {
  static constexpr const char* kModule = "convlab._cpu";
  static constexpr bool kDeviceMemory = false;
  static constexpr bool kHasReference = false;
  static constexpr bool kReleaseGil = true;
  using Runner = cpu::CpuRunner;
  static Runner make_runner(std::uintptr_t) { return {}; }
  static void locate(bindings::ArrayView&, const std::string&) {}
};

Padding parse_padding(const std::string& padding) {
  if (padding == "valid") return Padding::Valid;
  if (padding == "same") return Padding::Same;
  if (padding == "explicit") return Padding::Explicit;
  throw std::invalid_argument("padding must be 'valid', 'same' or 'explicit', got '" + padding + "'");
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "convlab CPU kernels (C++, OpenMP). Use convlab.kernels, which validates arguments.";

  py::class_<Conv2dGeometry>(m, "Conv2dGeometry",
                             "Sizes, strides, dilation and padding of a windowed NHWC op.")
      .def_readonly("batch", &Conv2dGeometry::batch)
      .def_readonly("in_height", &Conv2dGeometry::in_height)
      .def_readonly("in_width", &Conv2dGeometry::in_width)
      .def_readonly("in_channels", &Conv2dGeometry::in_channels)
      .def_readonly("kernel_height", &Conv2dGeometry::kernel_height)
      .def_readonly("kernel_width", &Conv2dGeometry::kernel_width)
      .def_readonly("out_height", &Conv2dGeometry::out_height)
      .def_readonly("out_width", &Conv2dGeometry::out_width)
      .def_readonly("out_channels", &Conv2dGeometry::out_channels)
      .def_readonly("stride_h", &Conv2dGeometry::stride_h)
      .def_readonly("stride_w", &Conv2dGeometry::stride_w)
      .def_readonly("dilation_h", &Conv2dGeometry::dilation_h)
      .def_readonly("dilation_w", &Conv2dGeometry::dilation_w)
      .def_readonly("pad_top", &Conv2dGeometry::pad_top)
      .def_readonly("pad_bottom", &Conv2dGeometry::pad_bottom)
      .def_readonly("pad_left", &Conv2dGeometry::pad_left)
      .def_readonly("pad_right", &Conv2dGeometry::pad_right)
      .def_readonly("depth_multiplier", &Conv2dGeometry::depth_multiplier)
      .def_property_readonly("input_shape", [](const Conv2dGeometry& g) { return bindings::input_shape(g); })
      .def_property_readonly("output_shape", [](const Conv2dGeometry& g) { return bindings::output_shape(g); })
      .def("__repr__", [](const Conv2dGeometry& g) {
        return "Conv2dGeometry(input=" + shape_string(bindings::input_shape(g)) + ", output=" +
               shape_string(bindings::output_shape(g)) + ", kernel=(" + std::to_string(g.kernel_height) +
               ", " + std::to_string(g.kernel_width) + "), strides=(" + std::to_string(g.stride_h) +
               ", " + std::to_string(g.stride_w) + "), dilation=(" + std::to_string(g.dilation_h) +
               ", " + std::to_string(g.dilation_w) + "), padding=(" + std::to_string(g.pad_top) +
               ", " + std::to_string(g.pad_bottom) + ", " + std::to_string(g.pad_left) + ", " +
               std::to_string(g.pad_right) + "))";
      });

  using Pair = std::pair<index_t, index_t>;
  using Pads = std::tuple<index_t, index_t, index_t, index_t>;
  m.def(
      "conv2d_geometry",
      [](Shape in, Pair kernel, index_t out_channels, Pair strides, Pair dilation,
         const std::string& padding, Pads pads) {
        if (in.size() != 4) throw std::invalid_argument("input shape must have 4 entries (N, H, W, C)");
        return make_conv2d_geometry(in[0], in[1], in[2], in[3], kernel.first, kernel.second,
                                    out_channels, strides.first, strides.second, dilation.first,
                                    dilation.second, parse_padding(padding), std::get<0>(pads),
                                    std::get<1>(pads), std::get<2>(pads), std::get<3>(pads));
      },
      py::arg("input_shape"), py::arg("kernel_size"), py::arg("out_channels"), py::arg("strides"),
      py::arg("dilation_rate"), py::arg("padding"), py::arg("pads") = Pads{0, 0, 0, 0});
  m.def(
      "depthwise_conv2d_geometry",
      [](Shape in, Pair kernel, index_t depth_multiplier, Pair strides, Pair dilation,
         const std::string& padding, Pads pads) {
        if (in.size() != 4) throw std::invalid_argument("input shape must have 4 entries (N, H, W, C)");
        return make_depthwise_conv2d_geometry(
            in[0], in[1], in[2], in[3], kernel.first, kernel.second, depth_multiplier,
            strides.first, strides.second, dilation.first, dilation.second,
            parse_padding(padding), std::get<0>(pads), std::get<1>(pads), std::get<2>(pads),
            std::get<3>(pads));
      },
      py::arg("input_shape"), py::arg("kernel_size"), py::arg("depth_multiplier"),
      py::arg("strides"), py::arg("dilation_rate"), py::arg("padding"),
      py::arg("pads") = Pads{0, 0, 0, 0});
  m.def(
      "pool2d_geometry",
      [](Shape in, Pair pool, Pair strides, const std::string& padding, Pads pads) {
        if (in.size() != 4) throw std::invalid_argument("input shape must have 4 entries (N, H, W, C)");
        return make_pool2d_geometry(in[0], in[1], in[2], in[3], pool.first, pool.second,
                                    strides.first, strides.second, parse_padding(padding),
                                    std::get<0>(pads), std::get<1>(pads), std::get<2>(pads),
                                    std::get<3>(pads));
      },
      py::arg("input_shape"), py::arg("pool_size"), py::arg("strides"), py::arg("padding"),
      py::arg("pads") = Pads{0, 0, 0, 0});
  m.def(
      "conv2d_transpose_geometry",
      [](Shape in, Pair kernel, index_t out_channels, Pair strides, Pair dilation,
         const std::string& padding, std::optional<Pair> output_padding) {
        if (in.size() != 4) throw std::invalid_argument("input shape must have 4 entries (N, H, W, C)");
        const Pair op = output_padding.value_or(Pair{0, 0});
        return make_conv2d_transpose_geometry(in[0], in[1], in[2], in[3], kernel.first,
                                              kernel.second, out_channels, strides.first,
                                              strides.second, dilation.first, dilation.second,
                                              parse_padding(padding), output_padding.has_value(),
                                              op.first, op.second);
      },
      py::arg("input_shape"), py::arg("kernel_size"), py::arg("out_channels"), py::arg("strides"),
      py::arg("dilation_rate"), py::arg("padding"), py::arg("output_padding") = py::none());

  bindings::bind_kernels<CpuBackend>(m);

  m.def("num_threads", []() { return omp_get_max_threads(); },
        "OpenMP threads the kernels use (set OMP_NUM_THREADS before import to change).");

  // Memory allocator tuning. A training step allocates and frees the same few arrays of
  // MiBs every step (activations, gradients, kernel outputs). With glibc's defaults most of
  // them come from fresh mmap'd or re-grown heap pages each time, and the kernel then
  // takes a page fault and zeroes 4 KiB for every page the step first touches: 40% of the
  // MNIST convnet's training step on one core (31 ms -> 18 ms with the settings below).
  // Keeping blocks up to 32 MiB in the heap and letting it hold up to 64 MiB of free
  // space at its top (256 MiB before it is trimmed) lets the next step reuse those pages.
  // The cost is that much memory kept by the process after large arrays are freed.
  // Opt out with CONVLAB_MALLOC_TUNING=0; a setting already made through glibc's own
  // MALLOC_*_ environment variables is left as it is.
  py::dict tuning;
#if defined(__GLIBC__)
  const char* opt_out = std::getenv("CONVLAB_MALLOC_TUNING");
  if (!(opt_out && std::string(opt_out) == "0")) {
    const auto set = [&](const char* variable, int parameter, int value, const char* name) {
      if (std::getenv(variable)) return;
      if (mallopt(parameter, value) == 1) tuning[name] = value;
    };
    set("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, 32 << 20, "mmap_threshold");
    set("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, 256 << 20, "trim_threshold");
    set("MALLOC_TOP_PAD_", M_TOP_PAD, 64 << 20, "top_pad");
  }
#endif
  m.attr("malloc_tuning") = tuning;
}
