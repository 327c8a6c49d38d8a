"""Arithmetic, reductions and shape operations on Tensors, each with its backward.

These are the operations behind Tensor's operators (+, -, *, /, @, **, slicing, sum, ...).
Binary operations broadcast like numpy; their backward sums the gradient over the axes
that broadcasting stretched (`unbroadcast`), so each input gets a gradient of its own shape.
"""

import builtins

import numpy as np

from ..autograd import Function, Tensor, array_module, as_tensor, _to_device

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "power", "matmul", "exp", "log",
    "sqrt", "abs", "maximum", "sum", "mean", "max", "reshape", "transpose", "getitem",
    "concatenate", "stack", "cast", "to_device", "unbroadcast",
]


def unbroadcast(grad, shape):
    """Sum grad (shaped like a broadcast result) back down to `shape`."""
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _operands(name, a, b):
    """Both operands as tensors on one device, checked to broadcast against each other."""
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like=like), as_tensor(b, like=like)
    if a.device != b.device:
        raise ValueError(f"{name}: operands are on different devices ({a.device} and {b.device}); move one with .to()")
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{name}: incompatible shapes {a.shape} and {b.shape} (they do not broadcast: "
            "trailing axes must be equal or 1)"
        ) from None
    return a, b


class AddFunction(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(grad, self.shapes[1])


class SubtractFunction(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(-grad, self.shapes[1])


class MultiplyFunction(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        a, b = self.a, self.b
        grad_a = unbroadcast(grad * b, a.shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * a, b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class DivideFunction(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        a, b = self.a, self.b
        grad_a = unbroadcast(grad / b, a.shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class NegativeFunction(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):
        return (-grad,)


class PowerFunction(Function):
    """a ** p for a constant exponent p."""

    def forward(self, a, *, exponent):
        self.a, self.exponent = a, exponent
        return a**exponent

    def backward(self, grad):
        return (grad * self.exponent * self.a ** (self.exponent - 1),)


class MatmulFunction(Function):
    """a @ b for 2-D operands (a batch of rows times a matrix, as in a Dense layer)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        grad_a = grad @ self.b.T if self.needs_input_grad[0] else None
        grad_b = self.a.T @ grad if self.needs_input_grad[1] else None
        return grad_a, grad_b


class ExpFunction(Function):
    def forward(self, a):
        self.y = array_module(a).exp(a)
        return self.y

    def backward(self, grad):
        return (grad * self.y,)


class LogFunction(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).log(a)

    def backward(self, grad):
        return (grad / self.a,)


class SqrtFunction(Function):
    def forward(self, a):
        self.y = array_module(a).sqrt(a)
        return self.y

    def backward(self, grad):
        return (grad / (2 * self.y),)


class AbsFunction(Function):
    def forward(self, a):
        xp = array_module(a)
        self.sign = xp.sign(a)
        return xp.abs(a)

    def backward(self, grad):
        return (grad * self.sign,)


class MaximumFunction(Function):
    """Elementwise maximum; where a == b the gradient goes to a."""

    def forward(self, a, b):
        self.a_wins = a >= b
        self.shapes = a.shape, b.shape
        return array_module(a).maximum(a, b)

    def backward(self, grad):
        return (unbroadcast(grad * self.a_wins, self.shapes[0]),
                unbroadcast(grad * ~self.a_wins, self.shapes[1]))


def add(a, b):
    return AddFunction.apply(*_operands("add", a, b))


def subtract(a, b):
    return SubtractFunction.apply(*_operands("subtract", a, b))


def multiply(a, b):
    return MultiplyFunction.apply(*_operands("multiply", a, b))


def divide(a, b):
    return DivideFunction.apply(*_operands("divide", a, b))


def maximum(a, b):
    return MaximumFunction.apply(*_operands("maximum", a, b))


def negative(a):
    return NegativeFunction.apply(a)


def power(a, exponent):
    if isinstance(exponent, Tensor):
        if exponent.size != 1 or exponent.tracked:
            raise TypeError("power: the exponent must be a constant number, not a tracked tensor")
        exponent = exponent.item()
    return PowerFunction.apply(a, exponent=exponent)


def matmul(a, b):
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"matmul: expected (m, k) @ (k, n), got shapes {a.shape} and {b.shape}"
        )
    return MatmulFunction.apply(a, b)


def exp(a):
    return ExpFunction.apply(a)


def log(a):
    return LogFunction.apply(a)


def sqrt(a):
    return SqrtFunction.apply(a)


def abs(a):  # noqa: A001 - the name numpy uses
    return AbsFunction.apply(a)


# --------------------------------------------------------------------------- reductions


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor of rank {ndim}")
    return tuple(sorted(a % ndim for a in axes))


class SumFunction(Function):
    def forward(self, a, *, axes, keepdims):
        self.shape, self.axes, self.keepdims = a.shape, axes, keepdims
        return a.sum(axis=axes, keepdims=keepdims)

    def backward(self, grad):
        if not self.keepdims:
            grad = grad.reshape([1 if i in self.axes else n for i, n in enumerate(self.shape)])
        return (array_module(grad).broadcast_to(grad, self.shape).copy(),)


class MaxFunction(Function):
    """Maximum over axes; ties share the gradient equally (as in TensorFlow)."""

    def forward(self, a, *, axes, keepdims):
        self.a, self.axes, self.keepdims = a, axes, keepdims
        self.y = a.max(axis=axes, keepdims=True)
        return self.y if keepdims else self.y.reshape([n for i, n in enumerate(a.shape) if i not in axes])

    def backward(self, grad):
        winners = self.a == self.y
        grad = grad.reshape(self.y.shape)
        return (grad * winners / winners.sum(axis=self.axes, keepdims=True),)


def sum(a, axis=None, keepdims=False):  # noqa: A001 - the name numpy uses
    a = as_tensor(a)
    return SumFunction.apply(a, axes=_axes(axis, a.ndim), keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    a = as_tensor(a)
    axes = _axes(axis, a.ndim)
    count = int(np.prod([a.shape[i] for i in axes]))
    return SumFunction.apply(a, axes=axes, keepdims=keepdims) * (1.0 / builtins.max(count, 1))


def max(a, axis=None, keepdims=False):  # noqa: A001 - the name numpy uses
    a = as_tensor(a)
    return MaxFunction.apply(a, axes=_axes(axis, a.ndim), keepdims=keepdims)


# --------------------------------------------------------------------------- shapes


class ReshapeFunction(Function):
    def forward(self, a, *, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return (grad.reshape(self.shape),)


class TransposeFunction(Function):
    def forward(self, a, *, axes):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, grad):
        return (grad.transpose(np.argsort(self.axes)),)


def _is_basic_index(index):
    """True for ints, slices, None and Ellipsis: each input element is read at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


class GetitemFunction(Function):
    def forward(self, a, *, index):
        self.shape, self.index = a.shape, index
        return a[index]

    def backward(self, grad):
        xp = array_module(grad)
        full = xp.zeros(self.shape, dtype=grad.dtype)
        if _is_basic_index(self.index):
            full[self.index] = grad
        elif xp is np:
            np.add.at(full, self.index, grad)  # an index may repeat: add, don't overwrite
        else:  # pragma: no cover - needs a GPU
            import cupyx

            cupyx.scatter_add(full, self.index, grad)
        return (full,)


class ConcatenateFunction(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return array_module(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, grad):
        bounds = np.cumsum(self.sizes)[:-1]
        return tuple(array_module(grad).split(grad, bounds.tolist(), axis=self.axis))


def reshape(a, shape):
    a = as_tensor(a)
    shape = tuple(int(n) for n in shape)
    known = int(np.prod([n for n in shape if n != -1]))
    if shape.count(-1) == 1 and known > 0 and a.size % known == 0:
        shape = tuple(a.size // known if n == -1 else n for n in shape)
    if min(shape, default=0) < 0 or int(np.prod(shape)) != a.size:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} elements) into {shape}")
    return ReshapeFunction.apply(a, shape=shape)


def transpose(a, axes=None):
    a = as_tensor(a)
    axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(int(i) % a.ndim for i in axes)
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {a.ndim} axes of shape {a.shape}")
    return TransposeFunction.apply(a, axes=axes)


def getitem(a, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetitemFunction.apply(a, index=index)


def concatenate(tensors, axis=-1):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    ndim = tensors[0].ndim
    if not -ndim <= axis < ndim:
        raise ValueError(f"concatenate: axis {axis} is out of range for tensors of rank {ndim}")
    axis %= ndim
    for t in tensors[1:]:
        if t.ndim != ndim or any(m != n for i, (m, n) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis):
            shapes = ", ".join(str(t.shape) for t in tensors)
            raise ValueError(
                f"concatenate: shapes {shapes} differ outside the concatenation axis {axis}"
            )
    return ConcatenateFunction.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    axis = axis % (tensors[0].ndim + 1)
    expanded = [reshape(t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors]
    return concatenate(expanded, axis=axis)


# --------------------------------------------------------------------------- dtype and device


class CastFunction(Function):
    def forward(self, a, *, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, grad):
        return (grad.astype(self.dtype),)


class ToDeviceFunction(Function):
    def forward(self, a, *, device):
        self.device = "cpu" if array_module(a) is np else "cuda"
        return _to_device(a, device)

    def backward(self, grad):
        return (_to_device(grad, self.device),)


def cast(a, dtype):
    a = as_tensor(a)
    if a.dtype == np.dtype(dtype):
        return a
    return CastFunction.apply(a, dtype=np.dtype(dtype))


def to_device(a, device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return ToDeviceFunction.apply(a, device=device)
