// One device-neutral view of an array handed in from Python, without copying it:
// a numpy array (host memory), or anything exposing __cuda_array_interface__ (CuPy
// arrays, torch CUDA tensors, numba device arrays) for device memory.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/geometry.h"

namespace convlab::bindings {

namespace py = pybind11;

using Shape = std::vector<index_t>;

enum class DType { Float32, Float64, Other };

inline std::string shape_string(const Shape& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline const char* dtype_name(DType d) {
  return d == DType::Float32 ? "float32" : d == DType::Float64 ? "float64" : "other";
}

struct ArrayView {
  void* data = nullptr;
  DType dtype = DType::Other;
  std::string dtype_text;    // as the producer spelled it, for messages
  Shape shape;
  bool contiguous = true;    // C order
  bool writeable = true;
  bool on_device = false;    // from __cuda_array_interface__
  int device = -1;           // the GPU that holds it (filled in by the CUDA module)

  index_t size() const {
    index_t n = 1;
    for (index_t s : shape) n *= s;
    return n;
  }
  std::size_t itemsize() const { return dtype == DType::Float64 ? 8 : 4; }
};

inline DType dtype_from_typestr(const std::string& typestr) {
  // '<f4' little-endian float32, '<f8' float64 ('=' and '|' also mean native here).
  if (typestr.size() == 3 && (typestr[0] == '<' || typestr[0] == '=' || typestr[0] == '|') &&
      typestr[1] == 'f') {
    if (typestr[2] == '4') return DType::Float32;
    if (typestr[2] == '8') return DType::Float64;
  }
  return DType::Other;
}

// C-contiguity from byte strides; axes of length 1 may have any stride.
inline bool is_c_contiguous(const Shape& shape, const std::vector<index_t>& strides,
                            index_t itemsize) {
  index_t expected = itemsize;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

// `where` is "op: name", the start of every message.
inline ArrayView view_of(py::handle h, const std::string& where) {
  ArrayView v;
  if (py::isinstance<py::array>(h)) {
    auto a = py::reinterpret_borrow<py::array>(h);
    // data() is the start of the buffer whether or not it is writeable.
    v.data = const_cast<void*>(a.data());
    // The dtype's text is made only for the error message: str(dtype) runs Python code in
    // numpy, three times the cost of the rest of a small kernel call.
    if (a.dtype().equal(py::dtype::of<float>())) v.dtype = DType::Float32;
    else if (a.dtype().equal(py::dtype::of<double>())) v.dtype = DType::Float64;
    v.dtype_text = v.dtype == DType::Other ? std::string(py::str(a.dtype())) : dtype_name(v.dtype);
    v.shape.assign(a.shape(), a.shape() + a.ndim());
    v.contiguous = (a.flags() & py::array::c_style) != 0;
    v.writeable = a.writeable();
    return v;
  }
  if (py::hasattr(h, "__cuda_array_interface__")) {
    py::dict cai = h.attr("__cuda_array_interface__");
    v.on_device = true;
    v.dtype_text = py::str(cai["typestr"]);
    v.dtype = dtype_from_typestr(v.dtype_text);
    for (auto s : py::tuple(cai["shape"])) v.shape.push_back(s.cast<index_t>());
    py::tuple data = cai["data"];
    v.data = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
    v.writeable = !data[1].cast<bool>();
    if (cai.contains("strides") && !cai["strides"].is_none()) {
      std::vector<index_t> strides;
      for (auto s : py::tuple(cai["strides"])) strides.push_back(s.cast<index_t>());
      v.contiguous = strides.size() == v.shape.size() &&
                     is_c_contiguous(v.shape, strides, static_cast<index_t>(v.itemsize()));
    }
    if (cai.contains("mask") && !cai["mask"].is_none())
      throw std::invalid_argument(where + " is a masked array; pass plain data");
    return v;
  }
  throw py::type_error(where + " must be a numpy array or a CUDA array (CuPy, or anything with "
                       "__cuda_array_interface__), got " +
                       std::string(py::str(py::type::handle_of(h).attr("__name__"))));
}

}  // namespace convlab::bindings
