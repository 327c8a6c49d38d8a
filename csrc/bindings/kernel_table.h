// The table of convlab's native kernels, bound into every native module from one place.
//
// Each entry names a kernel, lists its arguments (arrays in the order Python passes them,
// then scalars) and says, as data, what shape each array must have; a generic binder
// turns the entry into a Python function of the backend's module:
//
//   convlab._cpu.conv2d_forward(geometry, x, kernel, bias_or_None, y, *, variant, stream)
//   convlab._cuda_host.conv2d_forward(...)   the CUDA kernels on the host executor
//   convlab._cuda.conv2d_forward(...)        the CUDA kernels on the GPU
//
// The binder converts every array to an ArrayView (numpy or __cuda_array_interface__,
// no copy), checks its memory (host or device, as the backend needs), dtype, contiguity,
// shape and writability, picks the element type, and calls the backend's launcher. No
// arithmetic lives here: shapes come from the geometry (common/geometry.h) or from the
// first array. convlab.kernels checks the same things first with friendlier messages;
// these checks are the last line of defence, so that no call from Python can make a
// kernel read or write out of bounds.
//
// A backend B provides:
//   B::kModule            its module's name, for messages
//   B::kDeviceMemory      true when its arrays must live on a GPU
//   B::kHasReference      whether variant="reference" exists
//   B::kReleaseGil        whether to run the kernel without the GIL
//   B::Runner             what the launchers take as `run`
//   B::make_runner(stream)
//   B::locate(view)       fills view.device (GPU backends) and checks it is usable
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "array_view.h"
#include "common/geometry.h"
#include "cuda/exec.h"

namespace convlab::bindings {

namespace py = pybind11;
using cuda::Variant;

enum class Role { In, Optional, Out, Scalar };

struct Arg {
  const char* name;
  Role role;
};

// The arrays and scalars of one call, typed.
template <class T>
struct Arguments {
  std::vector<void*> pointers;   // one per argument (nullptr for an absent optional / a scalar)
  std::vector<Shape> shapes;     // one per argument (empty for scalars and absent arrays)
  std::vector<double> scalars;   // one per argument (0 for arrays)

  const T* in(std::size_t i) const { return static_cast<const T*>(pointers[i]); }
  T* out(std::size_t i) const { return static_cast<T*>(pointers[i]); }
  const Shape& shape(std::size_t i) const { return shapes[i]; }
  double scalar(std::size_t i) const { return scalars[i]; }
};

// What the shapes of one call must be: given the geometry (null for kernels without one)
// and the shapes as given, the expected shape of every array argument (in argument
// order, an entry for scalars too, ignored). It may throw std::invalid_argument.
using ShapeRule =
    std::function<std::vector<Shape>(const Conv2dGeometry*, const std::vector<Shape>&)>;

// ---- shape rules shared by the entries ----
inline Shape input_shape(const Conv2dGeometry& g) { return {g.batch, g.in_height, g.in_width, g.in_channels}; }
inline Shape output_shape(const Conv2dGeometry& g) { return {g.batch, g.out_height, g.out_width, g.out_channels}; }
inline Shape conv_kernel_shape(const Conv2dGeometry& g) {
  return {g.kernel_height, g.kernel_width, g.in_channels, g.out_channels};
}
inline Shape depthwise_kernel_shape(const Conv2dGeometry& g) {
  return {g.kernel_height, g.kernel_width, g.in_channels, g.depth_multiplier};
}

// (rows, channels) of an array viewed with its last axis as channels.
inline std::pair<index_t, index_t> rows_channels(const Shape& s, const std::string& where) {
  if (s.empty()) throw std::invalid_argument(where + " must have rank >= 1");
  index_t size = 1;
  for (index_t d : s) size *= d;
  if (size == 0) throw std::invalid_argument(where + " is empty, shape " + shape_string(s));
  return {size / s.back(), s.back()};
}

inline Shape require_rank4(const Shape& s, const std::string& where) {
  if (s.size() != 4)
    throw std::invalid_argument(where + " must be rank 4 (N, H, W, C), got shape " + shape_string(s));
  return s;
}

template <class Backend, class Call>
void def_kernel(py::module_& m, const char* op, bool has_geometry, std::vector<Arg> args,
                ShapeRule shapes, Call call) {
  std::string signature = std::string(op) + "(" + (has_geometry ? "geometry, " : "");
  for (std::size_t i = 0; i < args.size(); ++i)
    signature += std::string(args[i].name) + (args[i].role == Role::Optional ? " or None" : "") +
                 (args[i].role == Role::Out ? " (output)" : "") + ", ";
  signature += "*, variant='fast', stream=0)";

  auto body = [op, has_geometry, args, shapes, call, signature](py::args given,
                                                               const std::string& variant_name,
                                                               std::uintptr_t stream) {
    const std::string name(op);
    const Variant variant = cuda::parse_variant(variant_name);
    if (variant == Variant::Reference && !Backend::kHasReference)
      throw std::invalid_argument(name + ": " + Backend::kModule +
                                  " has one variant of each kernel, 'fast'; the reference "
                                  "variants belong to the CUDA kernels");
    const std::size_t expected = args.size() + (has_geometry ? 1 : 0);
    if (given.size() != expected)
      throw py::type_error(name + ": expected " + std::to_string(expected) + " arguments, " +
                           signature + ", got " + std::to_string(given.size()));
    std::optional<Conv2dGeometry> geometry;
    if (has_geometry) {
      try {
        geometry = given[0].cast<Conv2dGeometry>();
      } catch (const py::cast_error&) {
        throw py::type_error(name + ": the first argument must be a Conv2dGeometry");
      }
    }
    const std::size_t first = has_geometry ? 1 : 0;

    // Views and scalars.
    std::vector<std::optional<ArrayView>> views(args.size());
    std::vector<Shape> given_shapes(args.size());
    std::vector<double> scalars(args.size(), 0.0);
    for (std::size_t i = 0; i < args.size(); ++i) {
      py::handle h = given[first + i];
      const std::string where = name + ": " + args[i].name;
      if (args[i].role == Role::Scalar) {
        scalars[i] = h.cast<double>();
        continue;
      }
      if (h.is_none()) {
        if (args[i].role != Role::Optional) throw py::type_error(where + " must be an array, got None");
        continue;
      }
      ArrayView v = view_of(h, where);
      if (v.on_device != Backend::kDeviceMemory)
        throw py::type_error(where + (v.on_device ? " is a CUDA (device) array" : " is a host (numpy) array") +
                             " but " + Backend::kModule + " needs " +
                             (Backend::kDeviceMemory ? "CUDA arrays (CuPy)" : "host (numpy) arrays") +
                             "; move it with cupy.asarray()/cupy.asnumpy()");
      Backend::locate(v, where);
      given_shapes[i] = v.shape;
      views[i] = std::move(v);
    }

    // dtype, device, layout and shape of every array.
    const ArrayView* reference = nullptr;
    std::string reference_name;
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (!views[i]) continue;
      const ArrayView& v = *views[i];
      const std::string where = name + ": " + args[i].name;
      if (v.dtype == DType::Other)
        throw py::type_error(where + " has dtype " + v.dtype_text + ", expected float32 or float64");
      if (!reference) {
        reference = &v;
        reference_name = args[i].name;
      } else if (v.dtype != reference->dtype) {
        throw py::type_error(where + " has dtype " + dtype_name(v.dtype) + " but " + reference_name +
                             " has " + dtype_name(reference->dtype) + "; all arrays must have one dtype");
      } else if (v.device != reference->device) {
        throw std::invalid_argument(where + " is on GPU " + std::to_string(v.device) + " but " +
                                    reference_name + " is on GPU " + std::to_string(reference->device));
      }
      if (!v.contiguous) throw std::invalid_argument(where + " must be C-contiguous");
    }
    if (!reference) throw py::type_error(name + ": no array was given");
    const std::vector<Shape> want = shapes(geometry ? &*geometry : nullptr, given_shapes);
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (!views[i]) continue;
      const std::string where = name + ": " + args[i].name;
      if (views[i]->shape != want[i])
        throw std::invalid_argument(where + " has shape " + shape_string(views[i]->shape) +
                                    ", expected " + shape_string(want[i]));
      if (args[i].role == Role::Out && !views[i]->writeable)
        throw std::invalid_argument(where + " is read-only");
    }

    auto run_typed = [&](auto tag) {
      using T = decltype(tag);
      Arguments<T> a;
      a.pointers.resize(args.size(), nullptr);
      a.shapes = given_shapes;
      a.scalars = scalars;
      for (std::size_t i = 0; i < args.size(); ++i)
        if (views[i]) a.pointers[i] = views[i]->data;
      auto runner = Backend::make_runner(stream);
      const Conv2dGeometry g = geometry.value_or(Conv2dGeometry{});
      if (Backend::kReleaseGil) {
        py::gil_scoped_release release;
        call(runner, variant, g, a);
      } else {
        call(runner, variant, g, a);
      }
    };
    if (reference->dtype == DType::Float32) run_typed(float{});
    else run_typed(double{});
  };
  m.def(op, body, signature.c_str(), py::arg("variant") = "fast", py::arg("stream") = 0);
}

// ------------------------------------------------------------------------- the table
//
// Launchers are called unqualified: argument-dependent lookup on the runner's type finds
// the backend's launcher (convlab::cuda::... for the CUDA runners, the CPU module's
// adapters for the CPU runner).
template <class B>
void bind_kernels(py::module_& m) {
  const auto In = Role::In, Opt = Role::Optional, Out = Role::Out, Scalar = Role::Scalar;

  // ---- conv2d ----
  def_kernel<B>(m, "conv2d_forward", true, {{"x", In}, {"kernel", In}, {"bias", Opt}, {"y", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{input_shape(*g), conv_kernel_shape(*g), {g->out_channels}, output_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        conv2d_forward(run, v, g, a.in(0), a.in(1), a.in(2), a.out(3));
      });
  def_kernel<B>(m, "conv2d_backward_input", true, {{"grad_output", In}, {"kernel", In}, {"grad_input", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{output_shape(*g), conv_kernel_shape(*g), input_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        conv2d_backward_input(run, v, g, a.in(0), a.in(1), a.out(2));
      });
  def_kernel<B>(m, "conv2d_backward_kernel", true, {{"x", In}, {"grad_output", In}, {"grad_kernel", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{input_shape(*g), output_shape(*g), conv_kernel_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        conv2d_backward_kernel(run, v, g, a.in(0), a.in(1), a.out(2));
      });
  def_kernel<B>(m, "conv2d_backward_bias", false, {{"grad_output", In}, {"grad_bias", Out}},
      [](const Conv2dGeometry*, const std::vector<Shape>& s) {
        const auto rc = rows_channels(s[0], "conv2d_backward_bias: grad_output");
        return std::vector<Shape>{s[0], {rc.second}};
      },
      [](auto& run, Variant v, const Conv2dGeometry&, const auto& a) {
        const auto rc = rows_channels(a.shape(0), "grad_output");
        bias_backward(run, v, rc.first, rc.second, a.in(0), a.out(1));
      });

  // ---- conv2d transpose: g from conv2d_transpose_geometry, so g.in_* describe the
  // transposed conv's output and g.out_* its input ----
  def_kernel<B>(m, "conv2d_transpose_forward", true, {{"x", In}, {"kernel", In}, {"bias", Opt}, {"y", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{output_shape(*g), conv_kernel_shape(*g), {g->in_channels}, input_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        conv2d_transpose_forward(run, v, g, a.in(0), a.in(1), a.in(2), a.out(3));
      });
  def_kernel<B>(m, "conv2d_transpose_backward_input", true,
      {{"grad_output", In}, {"kernel", In}, {"grad_input", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{input_shape(*g), conv_kernel_shape(*g), output_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        conv2d_transpose_backward_input(run, v, g, a.in(0), a.in(1), a.out(2));
      });
  def_kernel<B>(m, "conv2d_transpose_backward_kernel", true,
      {{"x", In}, {"grad_output", In}, {"grad_kernel", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{output_shape(*g), input_shape(*g), conv_kernel_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        conv2d_transpose_backward_kernel(run, v, g, a.in(0), a.in(1), a.out(2));
      });

  // ---- depthwise conv2d ----
  def_kernel<B>(m, "depthwise_conv2d_forward", true, {{"x", In}, {"kernel", In}, {"bias", Opt}, {"y", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{input_shape(*g), depthwise_kernel_shape(*g), {g->out_channels}, output_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        depthwise_conv2d_forward(run, v, g, a.in(0), a.in(1), a.in(2), a.out(3));
      });
  def_kernel<B>(m, "depthwise_conv2d_backward_input", true,
      {{"grad_output", In}, {"kernel", In}, {"grad_input", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{output_shape(*g), depthwise_kernel_shape(*g), input_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        depthwise_conv2d_backward_input(run, v, g, a.in(0), a.in(1), a.out(2));
      });
  def_kernel<B>(m, "depthwise_conv2d_backward_kernel", true,
      {{"x", In}, {"grad_output", In}, {"grad_kernel", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{input_shape(*g), output_shape(*g), depthwise_kernel_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        depthwise_conv2d_backward_kernel(run, v, g, a.in(0), a.in(1), a.out(2));
      });

  // ---- pooling ----
  def_kernel<B>(m, "max_pool2d_forward", true, {{"x", In}, {"y", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{input_shape(*g), output_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        max_pool2d_forward(run, v, g, a.in(0), a.out(1));
      });
  def_kernel<B>(m, "max_pool2d_backward", true, {{"x", In}, {"grad_output", In}, {"grad_input", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{input_shape(*g), output_shape(*g), input_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        max_pool2d_backward(run, v, g, a.in(0), a.in(1), a.out(2));
      });
  def_kernel<B>(m, "avg_pool2d_forward", true, {{"x", In}, {"y", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{input_shape(*g), output_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        avg_pool2d_forward(run, v, g, a.in(0), a.out(1));
      });
  def_kernel<B>(m, "avg_pool2d_backward", true, {{"grad_output", In}, {"grad_input", Out}},
      [](const Conv2dGeometry* g, const std::vector<Shape>&) {
        return std::vector<Shape>{output_shape(*g), input_shape(*g)};
      },
      [](auto& run, Variant v, const Conv2dGeometry& g, const auto& a) {
        avg_pool2d_backward(run, v, g, a.in(0), a.out(1));
      });
  def_kernel<B>(m, "global_avg_pool2d_forward", false, {{"x", In}, {"y", Out}},
      [](const Conv2dGeometry*, const std::vector<Shape>& s) {
        const Shape x = require_rank4(s[0], "global_avg_pool2d_forward: x");
        return std::vector<Shape>{x, {x[0], x[3]}};
      },
      [](auto& run, Variant v, const Conv2dGeometry&, const auto& a) {
        const Shape& x = a.shape(0);
        global_avg_pool2d_forward(run, v, x[0], x[1] * x[2], x[3], a.in(0), a.out(1));
      });
  def_kernel<B>(m, "global_avg_pool2d_backward", false, {{"grad_output", In}, {"grad_input", Out}},
      [](const Conv2dGeometry*, const std::vector<Shape>& s) {
        const Shape x = require_rank4(s[1], "global_avg_pool2d_backward: grad_input");
        return std::vector<Shape>{{x[0], x[3]}, x};
      },
      [](auto& run, Variant v, const Conv2dGeometry&, const auto& a) {
        const Shape& x = a.shape(1);
        global_avg_pool2d_backward(run, v, x[0], x[1] * x[2], x[3], a.in(0), a.out(1));
      });

  // ---- batch normalization: x viewed as (rows, channels) ----
  auto channel_rule = [](const char* op, std::vector<int> per_channel) {
    return [op, per_channel](const Conv2dGeometry*, const std::vector<Shape>& s) {
      const Shape x = s[0];
      const index_t channels = rows_channels(x, std::string(op) + ": x").second;
      std::vector<Shape> want(s.size(), x);
      for (int i : per_channel) want[static_cast<std::size_t>(i)] = {channels};
      return want;
    };
  };
  def_kernel<B>(m, "batch_norm_forward_training", false,
      {{"x", In}, {"gamma", Opt}, {"beta", Opt}, {"moving_mean", Out}, {"moving_variance", Out},
       {"momentum", Scalar}, {"epsilon", Scalar}, {"y", Out}, {"batch_mean", Out},
       {"batch_variance", Out}},
      channel_rule("batch_norm_forward_training", {1, 2, 3, 4, 8, 9}),
      [](auto& run, Variant v, const Conv2dGeometry&, const auto& a) {
        const auto rc = rows_channels(a.shape(0), "x");
        batch_norm_forward_training(run, v, rc.first, rc.second, a.in(0), a.in(1), a.in(2),
                                    a.out(3), a.out(4), a.scalar(5), a.scalar(6), a.out(7),
                                    a.out(8), a.out(9));
      });
  def_kernel<B>(m, "batch_norm_forward_inference", false,
      {{"x", In}, {"gamma", Opt}, {"beta", Opt}, {"moving_mean", In}, {"moving_variance", In},
       {"epsilon", Scalar}, {"y", Out}},
      channel_rule("batch_norm_forward_inference", {1, 2, 3, 4}),
      [](auto& run, Variant v, const Conv2dGeometry&, const auto& a) {
        const auto rc = rows_channels(a.shape(0), "x");
        batch_norm_forward_inference(run, v, rc.first, rc.second, a.in(0), a.in(1), a.in(2),
                                     a.in(3), a.in(4), a.scalar(5), a.out(6));
      });
  def_kernel<B>(m, "batch_norm_backward", false,
      {{"x", In}, {"grad_output", In}, {"gamma", Opt}, {"batch_mean", In}, {"batch_variance", In},
       {"epsilon", Scalar}, {"grad_input", Out}, {"grad_gamma", Out}, {"grad_beta", Out}},
      channel_rule("batch_norm_backward", {2, 3, 4, 7, 8}),
      [](auto& run, Variant v, const Conv2dGeometry&, const auto& a) {
        const auto rc = rows_channels(a.shape(0), "x");
        batch_norm_backward(run, v, rc.first, rc.second, a.in(1), a.in(0), a.in(2), a.in(3),
                            a.in(4), a.scalar(5), a.out(6), a.out(7), a.out(8));
      });
  (void)Scalar;
}

}  // namespace convlab::bindings
