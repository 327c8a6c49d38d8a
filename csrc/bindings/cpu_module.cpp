// convlab._cpu: the CPU kernels, bound for Python.
//
// Thin on purpose: each function converts its arguments, checks every array against the
// geometry (dtype, C-contiguity, shape, writability), releases the GIL and calls the
// kernel. The Python wrappers in convlab.kernels check the same things first with
// friendlier messages; these checks are the last line of defence, so that no call from
// Python can make a kernel read or write out of bounds.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <optional>
#include <string>
#include <vector>

#include "common/geometry.h"
#include "cpu/kernels.h"

namespace py = pybind11;
using namespace convlab;

namespace {

Padding parse_padding(const std::string& padding) {
  if (padding == "valid") return Padding::Valid;
  if (padding == "same") return Padding::Same;
  if (padding == "explicit") return Padding::Explicit;
  throw std::invalid_argument("padding must be 'valid', 'same' or 'explicit', got '" + padding + "'");
}

std::string shape_string(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::string shape_string(const py::array& a) {
  std::vector<index_t> shape(a.shape(), a.shape() + a.ndim());
  return shape_string(shape);
}

template <typename T>
void check_array(const py::array& a, const char* op, const char* name,
                 const std::vector<index_t>& shape) {
  const std::string where = std::string(op) + ": " + name;
  if (!a.dtype().equal(py::dtype::of<T>()))
    throw py::type_error(where + " has dtype " + std::string(py::str(a.dtype())) + ", expected " +
                         std::string(py::str(py::dtype::of<T>())) + " like the other inputs");
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(where + " must be C-contiguous");
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
  if (!same)
    throw std::invalid_argument(where + " has shape " + shape_string(a) + ", expected " +
                                shape_string(shape));
}

template <typename T>
const T* input(const py::array& a, const char* op, const char* name,
               const std::vector<index_t>& shape) {
  check_array<T>(a, op, name, shape);
  return static_cast<const T*>(a.data());
}

template <typename T>
T* output(py::array& a, const char* op, const char* name, const std::vector<index_t>& shape) {
  check_array<T>(a, op, name, shape);
  if (!a.writeable()) throw std::invalid_argument(std::string(op) + ": " + name + " is read-only");
  return static_cast<T*>(a.mutable_data());
}

template <typename T>
const T* optional_input(const std::optional<py::array>& a, const char* op, const char* name,
                        const std::vector<index_t>& shape) {
  return a ? input<T>(*a, op, name, shape) : nullptr;
}

// Calls f(T{}) with T the element type of `reference` (float or double).
template <typename F>
void dispatch(const py::array& reference, const char* op, F&& f) {
  if (reference.dtype().equal(py::dtype::of<float>())) {
    f(float{});
  } else if (reference.dtype().equal(py::dtype::of<double>())) {
    f(double{});
  } else {
    throw py::type_error(std::string(op) + ": expected float32 or float64 arrays, got dtype " +
                         std::string(py::str(reference.dtype())));
  }
}

using Shape = std::vector<index_t>;
Shape input_shape(const Conv2dGeometry& g) { return {g.batch, g.in_height, g.in_width, g.in_channels}; }
Shape output_shape(const Conv2dGeometry& g) { return {g.batch, g.out_height, g.out_width, g.out_channels}; }
Shape conv_kernel_shape(const Conv2dGeometry& g) {
  return {g.kernel_height, g.kernel_width, g.in_channels, g.out_channels};
}
Shape depthwise_kernel_shape(const Conv2dGeometry& g) {
  return {g.kernel_height, g.kernel_width, g.in_channels, g.depth_multiplier};
}

// Rows and channels of an array viewed as (rows, channels), channels last.
std::pair<index_t, index_t> rows_channels(const py::array& a, const char* op, const char* name) {
  if (a.ndim() < 1) throw std::invalid_argument(std::string(op) + ": " + name + " must have rank >= 1");
  const index_t channels = a.shape(a.ndim() - 1);
  if (channels <= 0 || a.size() == 0)
    throw std::invalid_argument(std::string(op) + ": " + name + " is empty, shape " + shape_string(a));
  return {static_cast<index_t>(a.size()) / channels, channels};
}

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

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
      .def_property_readonly("input_shape", [](const Conv2dGeometry& g) { return input_shape(g); })
      .def_property_readonly("output_shape", [](const Conv2dGeometry& g) { return output_shape(g); })
      .def("__repr__", [](const Conv2dGeometry& g) {
        return "Conv2dGeometry(input=" + shape_string(input_shape(g)) + ", output=" +
               shape_string(output_shape(g)) + ", kernel=(" + std::to_string(g.kernel_height) +
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

  // ---- conv2d ----
  m.def("conv2d_forward", [](const Conv2dGeometry& g, py::array x, py::array kernel,
                             std::optional<py::array> bias, py::array y) {
    const char* op = "conv2d_forward";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", input_shape(g));
      auto pk = input<T>(kernel, op, "kernel", conv_kernel_shape(g));
      auto pb = optional_input<T>(bias, op, "bias", {g.out_channels});
      auto py_ = output<T>(y, op, "y", output_shape(g));
      py::gil_scoped_release release;
      cpu::conv2d_forward<T>(g, px, pk, pb, py_);
    });
  });
  m.def("conv2d_backward_input", [](const Conv2dGeometry& g, py::array grad_y, py::array kernel,
                                    py::array grad_x) {
    const char* op = "conv2d_backward_input";
    dispatch(grad_y, op, [&](auto tag) {
      using T = decltype(tag);
      auto pdy = input<T>(grad_y, op, "grad_output", output_shape(g));
      auto pk = input<T>(kernel, op, "kernel", conv_kernel_shape(g));
      auto pdx = output<T>(grad_x, op, "grad_input", input_shape(g));
      py::gil_scoped_release release;
      cpu::conv2d_backward_input<T>(g, pdy, pk, pdx);
    });
  });
  m.def("conv2d_backward_kernel", [](const Conv2dGeometry& g, py::array x, py::array grad_y,
                                     py::array grad_kernel) {
    const char* op = "conv2d_backward_kernel";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", input_shape(g));
      auto pdy = input<T>(grad_y, op, "grad_output", output_shape(g));
      auto pdk = output<T>(grad_kernel, op, "grad_kernel", conv_kernel_shape(g));
      py::gil_scoped_release release;
      cpu::conv2d_backward_kernel<T>(g, px, pdy, pdk);
    });
  });
  m.def("bias_backward", [](py::array grad_y, py::array grad_bias) {
    const char* op = "bias_backward";
    dispatch(grad_y, op, [&](auto tag) {
      using T = decltype(tag);
      auto [rows, channels] = rows_channels(grad_y, op, "grad_output");
      auto pdy = input<T>(grad_y, op, "grad_output", shape_of(grad_y));
      auto pdb = output<T>(grad_bias, op, "grad_bias", {channels});
      py::gil_scoped_release release;
      cpu::bias_backward<T>(rows, channels, pdy, pdb);
    });
  });

  // ---- conv2d transpose (g from conv2d_transpose_geometry: g.in_* is the transposed
  // conv's output, g.out_* its input) ----
  m.def("conv2d_transpose_forward", [](const Conv2dGeometry& g, py::array x, py::array kernel,
                                       std::optional<py::array> bias, py::array y) {
    const char* op = "conv2d_transpose_forward";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", output_shape(g));
      auto pk = input<T>(kernel, op, "kernel", conv_kernel_shape(g));
      auto pb = optional_input<T>(bias, op, "bias", {g.in_channels});
      auto py_ = output<T>(y, op, "y", input_shape(g));
      py::gil_scoped_release release;
      cpu::conv2d_transpose_forward<T>(g, px, pk, pb, py_);
    });
  });
  m.def("conv2d_transpose_backward_input", [](const Conv2dGeometry& g, py::array grad_y,
                                              py::array kernel, py::array grad_x) {
    const char* op = "conv2d_transpose_backward_input";
    dispatch(grad_y, op, [&](auto tag) {
      using T = decltype(tag);
      auto pdy = input<T>(grad_y, op, "grad_output", input_shape(g));
      auto pk = input<T>(kernel, op, "kernel", conv_kernel_shape(g));
      auto pdx = output<T>(grad_x, op, "grad_input", output_shape(g));
      py::gil_scoped_release release;
      cpu::conv2d_transpose_backward_input<T>(g, pdy, pk, pdx);
    });
  });
  m.def("conv2d_transpose_backward_kernel", [](const Conv2dGeometry& g, py::array x,
                                               py::array grad_y, py::array grad_kernel) {
    const char* op = "conv2d_transpose_backward_kernel";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", output_shape(g));
      auto pdy = input<T>(grad_y, op, "grad_output", input_shape(g));
      auto pdk = output<T>(grad_kernel, op, "grad_kernel", conv_kernel_shape(g));
      py::gil_scoped_release release;
      cpu::conv2d_transpose_backward_kernel<T>(g, px, pdy, pdk);
    });
  });

  // ---- depthwise conv2d ----
  m.def("depthwise_conv2d_forward", [](const Conv2dGeometry& g, py::array x, py::array kernel,
                                       std::optional<py::array> bias, py::array y) {
    const char* op = "depthwise_conv2d_forward";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", input_shape(g));
      auto pk = input<T>(kernel, op, "kernel", depthwise_kernel_shape(g));
      auto pb = optional_input<T>(bias, op, "bias", {g.out_channels});
      auto py_ = output<T>(y, op, "y", output_shape(g));
      py::gil_scoped_release release;
      cpu::depthwise_conv2d_forward<T>(g, px, pk, pb, py_);
    });
  });
  m.def("depthwise_conv2d_backward_input", [](const Conv2dGeometry& g, py::array grad_y,
                                              py::array kernel, py::array grad_x) {
    const char* op = "depthwise_conv2d_backward_input";
    dispatch(grad_y, op, [&](auto tag) {
      using T = decltype(tag);
      auto pdy = input<T>(grad_y, op, "grad_output", output_shape(g));
      auto pk = input<T>(kernel, op, "kernel", depthwise_kernel_shape(g));
      auto pdx = output<T>(grad_x, op, "grad_input", input_shape(g));
      py::gil_scoped_release release;
      cpu::depthwise_conv2d_backward_input<T>(g, pdy, pk, pdx);
    });
  });
  m.def("depthwise_conv2d_backward_kernel", [](const Conv2dGeometry& g, py::array x,
                                               py::array grad_y, py::array grad_kernel) {
    const char* op = "depthwise_conv2d_backward_kernel";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", input_shape(g));
      auto pdy = input<T>(grad_y, op, "grad_output", output_shape(g));
      auto pdk = output<T>(grad_kernel, op, "grad_kernel", depthwise_kernel_shape(g));
      py::gil_scoped_release release;
      cpu::depthwise_conv2d_backward_kernel<T>(g, px, pdy, pdk);
    });
  });

  // ---- pooling ----
  m.def("max_pool2d_forward", [](const Conv2dGeometry& g, py::array x, py::array y) {
    const char* op = "max_pool2d_forward";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", input_shape(g));
      auto py_ = output<T>(y, op, "y", output_shape(g));
      py::gil_scoped_release release;
      cpu::max_pool2d_forward<T>(g, px, py_);
    });
  });
  m.def("max_pool2d_backward", [](const Conv2dGeometry& g, py::array x, py::array grad_y,
                                  py::array grad_x) {
    const char* op = "max_pool2d_backward";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", input_shape(g));
      auto pdy = input<T>(grad_y, op, "grad_output", output_shape(g));
      auto pdx = output<T>(grad_x, op, "grad_input", input_shape(g));
      py::gil_scoped_release release;
      cpu::max_pool2d_backward<T>(g, px, pdy, pdx);
    });
  });
  m.def("avg_pool2d_forward", [](const Conv2dGeometry& g, py::array x, py::array y) {
    const char* op = "avg_pool2d_forward";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      auto px = input<T>(x, op, "x", input_shape(g));
      auto py_ = output<T>(y, op, "y", output_shape(g));
      py::gil_scoped_release release;
      cpu::avg_pool2d_forward<T>(g, px, py_);
    });
  });
  m.def("avg_pool2d_backward", [](const Conv2dGeometry& g, py::array grad_y, py::array grad_x) {
    const char* op = "avg_pool2d_backward";
    dispatch(grad_y, op, [&](auto tag) {
      using T = decltype(tag);
      auto pdy = input<T>(grad_y, op, "grad_output", output_shape(g));
      auto pdx = output<T>(grad_x, op, "grad_input", input_shape(g));
      py::gil_scoped_release release;
      cpu::avg_pool2d_backward<T>(g, pdy, pdx);
    });
  });
  m.def("global_avg_pool2d_forward", [](py::array x, py::array y) {
    const char* op = "global_avg_pool2d_forward";
    dispatch(x, op, [&](auto tag) {
      using T = decltype(tag);
      if (x.ndim() != 4) throw std::invalid_argument("global_avg_pool2d_forward: x must be rank 4 (N, H, W, C)");
      const Shape s = shape_of(x);
      auto px = input<T>(x, op, "x", s);
      auto py_ = output<T>(y, op, "y", {s[0], s[3]});
      py::gil_scoped_release release;
      cpu::global_avg_pool2d_forward<T>(s[0], s[1] * s[2], s[3], px, py_);
    });
  });
  m.def("global_avg_pool2d_backward", [](py::array grad_y, py::array grad_x) {
    const char* op = "global_avg_pool2d_backward";
    dispatch(grad_y, op, [&](auto tag) {
      using T = decltype(tag);
      if (grad_x.ndim() != 4) throw std::invalid_argument("global_avg_pool2d_backward: grad_input must be rank 4 (N, H, W, C)");
      const Shape s = shape_of(grad_x);
      auto pdy = input<T>(grad_y, op, "grad_output", {s[0], s[3]});
      auto pdx = output<T>(grad_x, op, "grad_input", s);
      py::gil_scoped_release release;
      cpu::global_avg_pool2d_backward<T>(s[0], s[1] * s[2], s[3], pdy, pdx);
    });
  });

  // ---- batch normalization (x viewed as (rows, channels)) ----
  m.def("batch_norm_forward_training",
        [](py::array x, std::optional<py::array> gamma, std::optional<py::array> beta,
           py::array moving_mean, py::array moving_variance, double momentum, double epsilon,
           py::array y, py::array batch_mean, py::array batch_variance) {
          const char* op = "batch_norm_forward_training";
          dispatch(x, op, [&](auto tag) {
            using T = decltype(tag);
            auto [rows, channels] = rows_channels(x, op, "x");
            auto px = input<T>(x, op, "x", shape_of(x));
            auto pg = optional_input<T>(gamma, op, "gamma", {channels});
            auto pb = optional_input<T>(beta, op, "beta", {channels});
            auto pmm = output<T>(moving_mean, op, "moving_mean", {channels});
            auto pmv = output<T>(moving_variance, op, "moving_variance", {channels});
            auto py_ = output<T>(y, op, "y", shape_of(x));
            auto pbm = output<T>(batch_mean, op, "batch_mean", {channels});
            auto pbv = output<T>(batch_variance, op, "batch_variance", {channels});
            py::gil_scoped_release release;
            cpu::batch_norm_forward_training<T>(rows, channels, px, pg, pb, pmm, pmv, momentum,
                                                epsilon, py_, pbm, pbv);
          });
        });
  m.def("batch_norm_forward_inference",
        [](py::array x, std::optional<py::array> gamma, std::optional<py::array> beta,
           py::array moving_mean, py::array moving_variance, double epsilon, py::array y) {
          const char* op = "batch_norm_forward_inference";
          dispatch(x, op, [&](auto tag) {
            using T = decltype(tag);
            auto [rows, channels] = rows_channels(x, op, "x");
            auto px = input<T>(x, op, "x", shape_of(x));
            auto pg = optional_input<T>(gamma, op, "gamma", {channels});
            auto pb = optional_input<T>(beta, op, "beta", {channels});
            auto pmm = input<T>(moving_mean, op, "moving_mean", {channels});
            auto pmv = input<T>(moving_variance, op, "moving_variance", {channels});
            auto py_ = output<T>(y, op, "y", shape_of(x));
            py::gil_scoped_release release;
            cpu::batch_norm_forward_inference<T>(rows, channels, px, pg, pb, pmm, pmv, epsilon, py_);
          });
        });
  m.def("batch_norm_backward",
        [](py::array grad_y, py::array x, std::optional<py::array> gamma, py::array batch_mean,
           py::array batch_variance, double epsilon, py::array grad_x, py::array grad_gamma,
           py::array grad_beta) {
          const char* op = "batch_norm_backward";
          dispatch(x, op, [&](auto tag) {
            using T = decltype(tag);
            auto [rows, channels] = rows_channels(x, op, "x");
            auto px = input<T>(x, op, "x", shape_of(x));
            auto pdy = input<T>(grad_y, op, "grad_output", shape_of(x));
            auto pg = optional_input<T>(gamma, op, "gamma", {channels});
            auto pbm = input<T>(batch_mean, op, "batch_mean", {channels});
            auto pbv = input<T>(batch_variance, op, "batch_variance", {channels});
            auto pdx = output<T>(grad_x, op, "grad_input", shape_of(x));
            auto pdg = output<T>(grad_gamma, op, "grad_gamma", {channels});
            auto pdb = output<T>(grad_beta, op, "grad_beta", {channels});
            py::gil_scoped_release release;
            cpu::batch_norm_backward<T>(rows, channels, pdy, px, pg, pbm, pbv, epsilon, pdx, pdg, pdb);
          });
        });

  m.def("num_threads", []() { return omp_get_max_threads(); },
        "OpenMP threads the kernels use (set OMP_NUM_THREADS before import to change).");
}
