"""Reverse-mode automatic differentiation: Tensor, Function, backward(), GradientTape, no_grad.

A Tensor holds one array (numpy on the CPU, CuPy on the GPU). Every differentiable
operation is a `Function` subclass with `forward` (on arrays) right beside `backward`
(from the gradient of the output to the gradients of the inputs), in the micrograd way.
When one of its inputs tracks gradients, applying a Function records it on the output
tensor (`out._fn`), and the recorded functions form a graph that `backward()` walks in
reverse topological order, adding up each tensor's gradient over all of its uses:

    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()        # MultiplyFunction then SumFunction, each recorded on its output
    y.backward()             # dy/dx = 2x, left in x.grad
    x.grad.numpy()           # array([2., 4.])

`GradientTape` gives the same machinery the TensorFlow shape the books use: watch a tensor
(an image for gradient ascent, an intermediate activation for Grad-CAM), compute under the
tape, then ask for `tape.gradient(target, sources)`.
"""

import contextlib
import contextvars

import numpy as np

from ._backend import array_module, cuda_available

__all__ = [
    "Tensor", "Variable", "Function", "GradientTape", "no_grad", "is_grad_enabled",
    "as_tensor", "array_module", "grad", "device", "default_device",
]


def _cupy():
    """CuPy, when CUDA can run here; otherwise one RuntimeError that says why."""
    status = cuda_available()
    if not status:
        raise RuntimeError(f"device 'cuda' is not available: {status.reason}")
    import cupy

    return cupy


_default_device = contextvars.ContextVar("convlab_default_device", default=None)


@contextlib.contextmanager
def device(name):
    """Keras' device scope: weights that layers create inside it live on `name`.

    >>> with convlab.device("cuda"):          # doctest: +SKIP
    ...     model = convlab.applications.mnist_convnet()
    >>> model.device                          # doctest: +SKIP
    'cuda'

    "gpu", "gpu:0" and "cuda:0" are accepted as Keras and PyTorch spell them (one GPU:
    index 0). Asking for the GPU where CUDA cannot run raises RuntimeError with
    convlab.cuda_available().reason.
    """
    canonical = _canonical_device(name)
    if canonical == "cuda":
        _cupy()
    token = _default_device.set(canonical)
    try:
        yield canonical
    finally:
        _default_device.reset(token)


def _canonical_device(name):
    if not isinstance(name, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {name!r}")
    lowered = name.lower()
    if lowered == "cpu" or lowered.startswith("cpu:"):
        return "cpu"
    if lowered in ("cuda", "gpu", "cuda:0", "gpu:0"):
        return "cuda"
    raise ValueError(f"device must be 'cpu', 'cuda' (or 'gpu', 'gpu:0', 'cuda:0'), got {name!r}")


def default_device():
    """The device of the innermost convlab.device() scope, or None outside any."""
    return _default_device.get()


def _to_device(array, device):
    if device == "cpu":
        return array.get() if array_module(array) is not np else array
    if device == "cuda":
        return _cupy().asarray(array)
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


# --------------------------------------------------------------------------- grad mode

_grad_enabled = True


def is_grad_enabled():
    return _grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Within this block (or decorated function) no operation is recorded for backward."""

    def __enter__(self):
        global _grad_enabled
        self._previous, _grad_enabled = _grad_enabled, False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous
        return False


# --------------------------------------------------------------------------- Tensor


class Tensor:
    """An n-dimensional array on "cpu" (numpy) or "cuda" (CuPy) that can record its history.

    requires_grad=True makes it a leaf whose gradient `backward()` accumulates into `.grad`
    (a Tensor). Results of operations on tracked tensors are tracked too.
    """

    __array_priority__ = 1000  # numpy_array + tensor -> Tensor.__radd__, not numpy's add
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        if array_module(data) is np:
            floating_from_python = not isinstance(data, (np.ndarray, np.generic))
            data = np.asarray(data, dtype=dtype)
            if dtype is None and floating_from_python and data.dtype == np.float64:
                data = data.astype(np.float32)  # Python floats become float32, as in Keras
        elif dtype is not None:
            data = data.astype(dtype, copy=False)
        self.data = data
        self.grad = None
        self.name = name
        self._fn = None  # the Function that produced this tensor, while the graph is kept
        self._freed = False  # produced by a Function whose graph was freed after backward
        self._watch_count = 0  # > 0 while a GradientTape watches this tensor
        self.requires_grad = requires_grad

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        value = bool(value)
        if value and not self.is_floating:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self._requires_grad = value

    @property
    def is_floating(self):
        return np.dtype(self.data.dtype).kind == "f"

    @property
    def tracked(self):
        """True when operations on this tensor are recorded for backward."""
        return self._requires_grad or self._watch_count > 0 or self._fn is not None or self._freed

    @property
    def is_leaf(self):
        return self._fn is None and not self._freed

    # ---- array facts

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return np.dtype(self.data.dtype)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return int(self.data.size)

    @property
    def device(self):
        return "cpu" if array_module(self.data) is np else "cuda"

    @property
    def xp(self):
        return array_module(self.data)

    def __len__(self):
        return self.shape[0]

    def numpy(self):
        """The data as a numpy array (copied from the GPU for a cuda tensor)."""
        return _to_device(self.data, "cpu")

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def item(self):
        return self.numpy().item()

    def to(self, device):
        """This tensor on `device` ("cpu" or "cuda"); differentiable, a no-op if already there."""
        if device == self.device:
            return self
        from .ops.math import to_device

        return to_device(self, device)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def astype(self, dtype):
        from .ops.math import cast

        return cast(self, dtype)

    def __repr__(self):
        grad = ", requires_grad=True" if self._requires_grad else ""
        device = "" if self.device == "cpu" else ", device='cuda'"
        body = np.array2string(self.numpy(), prefix="Tensor(", threshold=20)
        return f"Tensor({body}, dtype={self.dtype}{device}{grad})"

    def __bool__(self):
        return bool(self.numpy())

    def __float__(self):
        return float(self.item())

    # ---- backward

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires grad.

        `gradient` is the upstream gradient (array or Tensor of this tensor's shape); it may
        be left out only for a scalar. The graph is freed afterwards unless retain_graph.
        """
        if not self.tracked:
            raise RuntimeError(
                "backward() on a tensor that does not track gradients: none of the tensors it "
                "was computed from has requires_grad=True (or is watched by a GradientTape)"
            )
        if gradient is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a scalar tensor, this one has shape "
                    f"{self.shape}; pass backward(gradient) with an array of that shape"
                )
            gradient = self.xp.ones(self.shape, dtype=self.dtype)
        grads = _run_backward([self], [_as_upstream(gradient, self)], sources=None,
                              retain_graph=retain_graph)
        for tensor, g in grads.values():
            if tensor._requires_grad and tensor.is_leaf:
                g = g.astype(tensor.dtype, copy=False)
                tensor.grad = Tensor(g if tensor.grad is None else tensor.grad.data + g)

    def zero_grad(self):
        self.grad = None

    # ---- operators (the functions live in convlab.ops.math)

    def __add__(self, other):
        return _math().add(self, other)

    def __radd__(self, other):
        return _math().add(other, self)

    def __sub__(self, other):
        return _math().subtract(self, other)

    def __rsub__(self, other):
        return _math().subtract(other, self)

    def __mul__(self, other):
        return _math().multiply(self, other)

    def __rmul__(self, other):
        return _math().multiply(other, self)

    def __truediv__(self, other):
        return _math().divide(self, other)

    def __rtruediv__(self, other):
        return _math().divide(other, self)

    def __matmul__(self, other):
        return _math().matmul(self, other)

    def __rmatmul__(self, other):
        return _math().matmul(other, self)

    def __pow__(self, exponent):
        return _math().power(self, exponent)

    def __neg__(self):
        return _math().negative(self)

    def __getitem__(self, index):
        return _math().getitem(self, index)

    def __lt__(self, other):
        return Tensor(self.data < _data(other))

    def __le__(self, other):
        return Tensor(self.data <= _data(other))

    def __gt__(self, other):
        return Tensor(self.data > _data(other))

    def __ge__(self, other):
        return Tensor(self.data >= _data(other))

    __hash__ = object.__hash__  # tensors are graph nodes: identity, not value, is the key

    def sum(self, axis=None, keepdims=False):
        return _math().sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _math().mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return _math().max(self, axis, keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return _math().reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = axes[0]
        return _math().transpose(self, axes or None)

    @property
    def T(self):
        return self.transpose()

    def exp(self):
        return _math().exp(self)

    def log(self):
        return _math().log(self)

    def sqrt(self):
        return _math().sqrt(self)

    def abs(self):
        return _math().abs(self)

    def argmax(self, axis=None):
        return Tensor(self.xp.argmax(self.data, axis=axis))


class Variable(Tensor):
    """A layer's weight: a named tensor that keeps its identity while its value changes.

    Trainable variables require grad; `assign` replaces the value in place (same shape).
    """

    def __init__(self, data, trainable=True, name=None, dtype=None):
        super().__init__(data, requires_grad=False, dtype=dtype, name=name)
        if not self.is_floating:
            raise TypeError(f"variable {name!r} must be floating-point, got dtype {self.dtype}")
        self._trainable = bool(trainable)
        self._layer_trainable = True
        self._update_requires_grad()

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        self._update_requires_grad()

    def _set_layer_trainable(self, value):
        """Called by the owning layer: a frozen layer's weights record no gradient."""
        self._layer_trainable = bool(value)
        self._update_requires_grad()

    def _update_requires_grad(self):
        self.requires_grad = self._trainable and self._layer_trainable

    def assign(self, value):
        """Write `value` into this variable (same shape; cast to its dtype, kept on its device)."""
        value = _data(value)
        if array_module(value) is np:
            value = np.asarray(value)
        if tuple(value.shape) != self.shape:
            raise ValueError(
                f"cannot assign a value of shape {tuple(value.shape)} to variable {self.name!r} "
                f"of shape {self.shape}"
            )
        self.data[...] = _to_device(value, self.device).astype(self.dtype, copy=False)
        return self

    def __repr__(self):
        return f"<Variable {self.name!r} shape={self.shape} dtype={self.dtype} trainable={self.trainable}>"


def _math():
    from .ops import math

    return math


def _data(value):
    return value.data if isinstance(value, Tensor) else value


def as_tensor(value, dtype=None, like=None):
    """A Tensor from a Tensor (returned as is), an array, or a Python number.

    With `like`, a Python number or numpy array becomes an array of like's dtype (for a
    number) on like's device, so `x * 2.0` keeps x's float32.
    """
    if isinstance(value, Tensor):
        return value if dtype is None or value.dtype == np.dtype(dtype) else value.astype(dtype)
    if like is not None:
        if dtype is None and isinstance(value, (bool, int, float)):
            dtype = like.dtype
        if array_module(value) is np:
            value = np.asarray(value, dtype=dtype)
        return Tensor(_to_device(value, like.device), dtype=dtype)
    return Tensor(value, dtype=dtype)


def _as_upstream(gradient, tensor):
    g = _data(gradient)
    g = _to_device(g, tensor.device) if array_module(g) is not tensor.xp else g
    g = tensor.xp.asarray(g, dtype=tensor.dtype)
    if tuple(g.shape) != tensor.shape:
        raise ValueError(
            f"the upstream gradient has shape {tuple(g.shape)}, the tensor has shape {tensor.shape}"
        )
    return g


# --------------------------------------------------------------------------- Function


class Function:
    """One differentiable operation: `forward` on arrays, `backward` right beside it.

    Subclasses write
        forward(self, *arrays, **attributes) -> output array   (may save things on self)
        backward(self, grad_output) -> one gradient (array or None) per positional input
    and are applied to tensors with `Subclass.apply(*tensors_or_None, **attributes)`.
    Inside backward, `self.needs_input_grad[i]` says whether input i's gradient is wanted,
    so expensive ones (a kernel gradient, say) are skipped when nobody asks for them.
    """

    needs_input_grad = ()

    @classmethod
    def apply(cls, *inputs, **attributes):
        tensors = tuple(None if t is None else as_tensor(t) for t in inputs)
        fn = cls()
        arrays = [None if t is None else t.data for t in tensors]
        output = Tensor(fn.forward(*arrays, **attributes))
        if _grad_enabled and any(t is not None and t.tracked for t in tensors):
            if not output.is_floating:
                return output  # integer and boolean results carry no gradient
            fn.inputs = tensors
            output._fn = fn
        return output

    def forward(self, *arrays, **attributes):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError


# --------------------------------------------------------------------------- the backward pass


def _topological_order(roots):
    """Tensors reachable from roots through recorded Functions, inputs before outputs.

    A depth-first post-order: a tensor is appended after everything it was computed from.
    It is marked visited when it is expanded, not when it is pushed, so a tensor pushed by
    one consumer and reached again through another (z feeding both y and z.sum() in
    y = z + z.sum()) is still expanded before anything that depends on it is appended.
    """
    order, visited = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            tensor, expanded = stack.pop()
            if expanded:
                order.append(tensor)
                continue
            if id(tensor) in visited:
                continue
            visited.add(id(tensor))
            stack.append((tensor, True))
            if tensor._freed and tensor._fn is None:
                raise RuntimeError(
                    "trying to backward through a graph a second time: its saved values were "
                    "freed by the first backward(); pass retain_graph=True to the first call "
                    "(or use GradientTape(persistent=True))"
                )
            if tensor._fn is not None:
                for parent in tensor._fn.inputs:
                    if parent is not None and id(parent) not in visited:
                        stack.append((parent, False))
    return order


def _run_backward(targets, upstream, sources, retain_graph):
    """Gradients of sum(target * upstream) with respect to the tensors of the graph.

    Returns {id(tensor): (tensor, gradient array)} for every tensor that received a
    gradient. With `sources` (a list of tensors), only the branches that lead to them are
    differentiated.
    """
    order = _topological_order(targets)
    if sources is None:
        wanted = None
    else:
        # A tensor's gradient is wanted if it is a source or some source lies below it.
        source_ids = {id(s) for s in sources}
        wanted = set()
        for tensor in order:  # inputs come first, so parents are decided before children
            if id(tensor) in source_ids or (
                tensor._fn is not None
                and any(p is not None and id(p) in wanted for p in tensor._fn.inputs)
            ):
                wanted.add(id(tensor))

    grads = {}
    for target, g in zip(targets, upstream):
        _accumulate(grads, target, g)
    for tensor in reversed(order):
        fn = tensor._fn
        entry = grads.get(id(tensor))
        if fn is None or entry is None:
            continue
        fn.needs_input_grad = tuple(
            p is not None and (p.tracked if wanted is None else id(p) in wanted) for p in fn.inputs
        )
        if any(fn.needs_input_grad):
            input_grads = fn.backward(entry[1])
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            if len(input_grads) != len(fn.inputs):
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned {len(input_grads)} gradients "
                    f"for {len(fn.inputs)} inputs"
                )
            for parent, needed, g in zip(fn.inputs, fn.needs_input_grad, input_grads):
                if needed and g is not None:
                    _accumulate(grads, parent, g)
        if sources is None or id(tensor) not in source_ids:
            del grads[id(tensor)]  # nobody asked for an intermediate's gradient: free it now
    if not retain_graph:
        for tensor in order:
            if tensor._fn is not None:
                tensor._fn = None
                tensor._freed = True
    return grads


def _accumulate(grads, tensor, g):
    if tuple(g.shape) != tensor.shape:
        raise RuntimeError(
            f"internal error: a gradient of shape {tuple(g.shape)} reached a tensor of shape "
            f"{tensor.shape}"
        )
    entry = grads.get(id(tensor))
    grads[id(tensor)] = (tensor, g if entry is None else entry[1] + g)


def grad(targets, sources, output_gradients=None, retain_graph=False):
    """Gradients of the sum of `targets` with respect to each of `sources`.

    Functional: nothing is written to `.grad`. A source the targets do not depend on gets
    None (as in TensorFlow). `targets` and `sources` are a tensor or a list of tensors; the
    result has the same structure as `sources`.
    """
    single_source = isinstance(sources, Tensor)
    source_list = [sources] if single_source else list(sources)
    for index, s in enumerate(source_list):
        if not isinstance(s, Tensor):
            raise TypeError(f"sources[{index}] must be a Tensor, got {type(s).__name__}")
    target_list = [targets] if isinstance(targets, Tensor) else list(targets)
    if output_gradients is None:
        upstream = [t.xp.ones(t.shape, dtype=t.dtype) for t in target_list]
    else:
        output_gradients = [output_gradients] if not isinstance(output_gradients, (list, tuple)) else output_gradients
        upstream = [_as_upstream(g, t) for g, t in zip(output_gradients, target_list)]
    tracked = [(t, g) for t, g in zip(target_list, upstream) if t.tracked]
    grads = {}
    if tracked:
        grads = _run_backward([t for t, _ in tracked], [g for _, g in tracked], source_list, retain_graph)
    results = [Tensor(grads[id(s)][1]) if id(s) in grads else None for s in source_list]
    return results[0] if single_source else results


# --------------------------------------------------------------------------- GradientTape


class GradientTape:
    """TensorFlow's GradientTape on convlab's graph.

        with GradientTape() as tape:
            tape.watch(image)                 # a tensor that is not a weight
            loss = model(image)[0, 3]
        grads = tape.gradient(loss, image)    # or a list: tape.gradient(loss, model.trainable_weights)

    Trainable weights are watched without asking (they require grad). A non-persistent tape
    answers one gradient() call and frees the graph; persistent=True keeps it for more.
    """

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._watched = []
        self._used = False
        self._recording = False

    def __enter__(self):
        self._recording = True
        return self

    def __exit__(self, *exc):
        self._recording = False
        for tensor in self._watched:
            tensor._watch_count -= 1
        return False

    def watch(self, tensor):
        """Record the operations on `tensor` (or on each tensor of a list) from now on."""
        if isinstance(tensor, (list, tuple)):
            for t in tensor:
                self.watch(t)
            return
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"GradientTape.watch needs a convlab Tensor, got {type(tensor).__name__}; "
                "wrap an array first: x = convlab.Tensor(array)"
            )
        if not tensor.is_floating:
            raise TypeError(f"GradientTape.watch: only floating-point tensors have gradients, got {tensor.dtype}")
        if not self._recording:
            raise RuntimeError("GradientTape.watch must be called inside the tape's `with` block")
        tensor._watch_count += 1
        self._watched.append(tensor)

    def gradient(self, target, sources, output_gradients=None):
        """d(target)/d(source) for each source (None where target does not depend on it)."""
        if self._used and not self.persistent:
            raise RuntimeError(
                "a non-persistent GradientTape can compute gradients only once; "
                "use GradientTape(persistent=True) to call gradient() several times"
            )
        self._used = True
        return grad(target, sources, output_gradients, retain_graph=self.persistent)

