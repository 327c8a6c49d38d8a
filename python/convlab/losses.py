"""Losses, Keras' way: crossentropies (sparse, categorical, binary) and mean squared error.

Each loss is one fused Function whose forward and backward sit side by side, so the
numerics are visible in one screen and no intermediate (log of a clipped probability,
say) is kept per element beyond what backward needs.

From probabilities (the default, after a softmax or sigmoid output layer) Keras clips
p to [eps, 1 - eps] with eps = 1e-7 before taking logs, so a confident wrong answer
costs -log(1e-7) ~ 16.1 instead of infinity; where the clip is active the gradient is
zero, as it is for a clip in TensorFlow. Categorical probabilities are first divided by
their sum (Keras does, so outputs that do not quite sum to one are still a distribution).
With from_logits=True the loss works on pre-activation scores through log-sum-exp,
which is exact for any magnitude.

Probabilities straight from convlab's softmax (or sigmoid) carry the scores they came from
(`tensor._logits`); given such a tensor, a crossentropy uses the scores, as Keras does on
its TensorFlow backend. That matters in training: once a softmax saturates (p = 1 for a
wrong class), the clipped-probability gradient is exactly zero and the unit never recovers,
while the gradient through the logits, p - onehot, still pulls it back. Arrays, and tensors
from anywhere else, get the clipped formula.

Per-element losses are averaged over every element that is not the class axis: for a
segmentation output (batch, h, w, classes) with integer masks (batch, h, w), the
sparse crossentropy is the mean over all pixels of all images (Keras' default
"sum_over_batch_size" reduction of the per-pixel losses).
"""

import numpy as np

from . import utils
from .autograd import Function, Tensor, array_module, as_tensor

__all__ = [
    "Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "sparse_categorical_crossentropy", "categorical_crossentropy",
    "binary_crossentropy", "mean_squared_error", "mean_absolute_error", "get", "serialize",
]

EPSILON = 1e-7  # Keras' backend.epsilon()


def _data(value):
    return value.data if isinstance(value, Tensor) else value


def _logits_behind(y_pred, from_logits):
    """(tensor, from_logits): the scores behind softmax/sigmoid probabilities when they are known."""
    logits = getattr(y_pred, "_logits", None)
    if not from_logits and logits is not None and logits.shape == y_pred.shape:
        return logits, True
    return y_pred, from_logits


def _as_target(y_true, like):
    """The targets as an array on the predictions' device."""
    xp = array_module(like)
    y_true = _data(y_true)
    if array_module(y_true) is not xp:
        y_true = xp.asarray(y_true) if xp is not np else y_true.get()
    return xp.asarray(y_true)


# --------------------------------------------------------------------------- Functions


class SparseCrossentropyFromProbabilities(Function):
    """mean over rows of -log(clip(p[label] / sum(p))) for integer labels."""

    def forward(self, p, *, labels):
        xp = array_module(p)
        self.total = p.sum(axis=-1, keepdims=True)
        picked = xp.take_along_axis(p, labels[..., None], axis=-1) / self.total
        self.inside = (picked > EPSILON) & (picked < 1 - EPSILON)
        self.picked, self.labels = picked, labels
        self.count, self.shape, self.dtype = labels.size, p.shape, p.dtype
        return xp.asarray(-xp.log(xp.clip(picked, EPSILON, 1 - EPSILON)).mean(), dtype=p.dtype)

    def backward(self, grad):
        # d/dp_j of -log(p_l / s) = -[j == l] / p_l + 1 / s, zero where the clip was active.
        xp = array_module(self.total)
        scale = (grad / self.count) * self.inside
        g = xp.broadcast_to(scale / self.total, self.total.shape[:-1] + (self.shape[-1],)).copy()
        p_label = xp.where(self.inside, self.picked * self.total, 1)  # 0/0 where clipped (scale is 0 there)
        xp.put_along_axis(g, self.labels[..., None],
                          xp.take_along_axis(g, self.labels[..., None], axis=-1) - scale / p_label, axis=-1)
        return (g.astype(self.dtype, copy=False),)


class SparseCrossentropyFromLogits(Function):
    """mean over rows of logsumexp(z) - z[label]."""

    def forward(self, z, *, labels):
        xp = array_module(z)
        shifted = z - z.max(axis=-1, keepdims=True)
        log_total = xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        self.log_softmax, self.labels = shifted - log_total, labels
        picked = xp.take_along_axis(self.log_softmax, labels[..., None], axis=-1)
        return xp.asarray(-picked.mean(), dtype=z.dtype)

    def backward(self, grad):
        # d/dz = softmax(z) - one_hot(label)
        xp = array_module(self.log_softmax)
        g = xp.exp(self.log_softmax)
        xp.put_along_axis(g, self.labels[..., None],
                          xp.take_along_axis(g, self.labels[..., None], axis=-1) - 1, axis=-1)
        return ((g * (grad / self.labels.size)).astype(self.log_softmax.dtype, copy=False),)


class CategoricalCrossentropyFromProbabilities(Function):
    """mean over rows of -sum_j t_j log(clip(p_j / sum(p)))."""

    def forward(self, p, *, target):
        xp = array_module(p)
        self.total = p.sum(axis=-1, keepdims=True)
        q = p / self.total
        self.inside = (q > EPSILON) & (q < 1 - EPSILON)
        self.p, self.target, self.rows = p, target, p.size // p.shape[-1]
        return xp.asarray(-(target * xp.log(xp.clip(q, EPSILON, 1 - EPSILON))).sum() / self.rows, dtype=p.dtype)

    def backward(self, grad):
        # d/dp_j = sum over unclipped l of t_l / s  -  t_j / p_j [j unclipped]
        xp = array_module(self.p)
        kept = self.target * self.inside
        safe_p = xp.where(self.inside, self.p, 1)
        g = kept.sum(axis=-1, keepdims=True) / self.total - kept / safe_p
        return ((g * (grad / self.rows)).astype(self.p.dtype, copy=False),)


class CategoricalCrossentropyFromLogits(Function):
    """mean over rows of -sum_j t_j log_softmax(z)_j."""

    def forward(self, z, *, target):
        xp = array_module(z)
        shifted = z - z.max(axis=-1, keepdims=True)
        self.log_softmax = shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        self.target, self.rows = target, z.size // z.shape[-1]
        return xp.asarray(-(target * self.log_softmax).sum() / self.rows, dtype=z.dtype)

    def backward(self, grad):
        # d/dz = softmax(z) * sum(t) - t
        xp = array_module(self.log_softmax)
        g = xp.exp(self.log_softmax) * self.target.sum(axis=-1, keepdims=True) - self.target
        return ((g * (grad / self.rows)).astype(self.log_softmax.dtype, copy=False),)


class BinaryCrossentropyFromProbabilities(Function):
    """mean of -(t log(p + eps) + (1 - t) log(1 - p + eps)) with p clipped to [eps, 1 - eps]."""

    def forward(self, p, *, target):
        xp = array_module(p)
        self.p = xp.clip(p, EPSILON, 1 - EPSILON)
        self.inside = (p > EPSILON) & (p < 1 - EPSILON)
        self.target = target
        loss = -(target * xp.log(self.p + EPSILON) + (1 - target) * xp.log(1 - self.p + EPSILON))
        return xp.asarray(loss.mean(), dtype=p.dtype)

    def backward(self, grad):
        t, p = self.target, self.p
        g = (-t / (p + EPSILON) + (1 - t) / (1 - p + EPSILON)) * self.inside
        return ((g * (grad / p.size)).astype(p.dtype, copy=False),)


class BinaryCrossentropyFromLogits(Function):
    """mean of max(z, 0) - z t + log(1 + exp(-|z|)): no overflow for any z."""

    def forward(self, z, *, target):
        xp = array_module(z)
        self.z, self.target = z, target
        loss = xp.maximum(z, 0) - z * target + xp.log1p(xp.exp(-xp.abs(z)))
        return xp.asarray(loss.mean(), dtype=z.dtype)

    def backward(self, grad):
        xp = array_module(self.z)
        sigmoid = 0.5 * (xp.tanh(0.5 * self.z) + 1)
        return (((sigmoid - self.target) * (grad / self.z.size)).astype(self.z.dtype, copy=False),)


class MeanSquaredErrorFunction(Function):
    def forward(self, y, *, target):
        self.difference = y - target
        return array_module(y).asarray((self.difference * self.difference).mean(), dtype=y.dtype)

    def backward(self, grad):
        d = self.difference
        return ((2 * grad / d.size) * d,)


class MeanAbsoluteErrorFunction(Function):
    def forward(self, y, *, target):
        xp = array_module(y)
        self.sign = xp.sign(y - target)
        return xp.asarray(xp.abs(y - target).mean(), dtype=y.dtype)

    def backward(self, grad):
        return ((grad / self.sign.size) * self.sign,)


# --------------------------------------------------------------------------- Loss objects


class Loss:
    """A loss: `loss(y_true, y_pred)` -> a scalar Tensor (mean over the batch and any spatial axes)."""

    name = "loss"

    def __init__(self, name=None):
        if name is not None:
            self.name = name

    def __call__(self, y_true, y_pred):
        y_pred = as_tensor(y_pred)
        if not y_pred.is_floating:
            raise TypeError(f"{self.name}: y_pred must be floating point, got dtype {y_pred.dtype}")
        return self.call(y_true, y_pred)

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def check_targets(self, y_true, output_shape):
        """Validate a (numpy) target array against the model output shape before training.
        Subclasses raise ValueError naming what is wrong."""

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _label_smoothing(loss_name, value):
    if not 0 <= value <= 1:
        raise ValueError(f"{loss_name}: label_smoothing must be in [0, 1], got {value}")
    return float(value)


def _check_same_shape(loss_name, y_true_shape, y_pred_shape):
    if tuple(y_true_shape) != tuple(y_pred_shape):
        raise ValueError(
            f"{loss_name}: y_true has shape {tuple(y_true_shape)} but y_pred has shape {tuple(y_pred_shape)}; "
            "they must match"
        )


class SparseCategoricalCrossentropy(Loss):
    """Integer class labels against per-class probabilities (or logits) on the last axis.

    y_true: integers of shape y_pred.shape[:-1] (a trailing axis of size 1 is accepted, as
    in Keras), each in [0, classes). Works per pixel for segmentation outputs.
    """

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, name=None):
        super().__init__(name)
        self.from_logits = bool(from_logits)

    def _labels(self, y_true, shape):
        shape = tuple(shape)
        labels_shape = tuple(np.shape(y_true))
        if labels_shape == shape[:-1] + (1,) and len(shape) > 1 and shape[-1] != 1 or (
                labels_shape == shape and shape[-1] == 1):
            labels_shape = labels_shape[:-1]
        if labels_shape != shape[:-1]:
            raise ValueError(
                f"{self.name}: y_true has shape {tuple(np.shape(y_true))}, expected integer labels of shape "
                f"{shape[:-1]} (y_pred has shape {shape}: one probability per class on the last axis)"
            )
        return labels_shape

    def check_targets(self, y_true, output_shape):
        y_true = np.asarray(y_true)
        classes = output_shape[-1]
        if y_true.size == 0:
            return
        if y_true.dtype.kind == "f" and not np.all(y_true == np.round(y_true)):
            raise ValueError(f"{self.name}: y_true must hold integer class labels, got non-integer values")
        if y_true.dtype.kind not in "iuf":
            raise ValueError(f"{self.name}: y_true must hold integer class labels, got dtype {y_true.dtype}")
        low, high = y_true.min(), y_true.max()
        if classes is not None and (low < 0 or high >= classes):
            raise ValueError(
                f"{self.name}: labels must be in [0, {classes}) for a model output with {classes} classes, "
                f"got labels in [{low:g}, {high:g}]"
            )

    def call(self, y_true, y_pred):
        labels = _as_target(y_true, y_pred.data)
        xp = array_module(labels)
        labels = labels.reshape(self._labels(labels, y_pred.shape))
        classes = y_pred.shape[-1]
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            raise ValueError(
                f"{self.name}: labels must be in [0, {classes}), got labels in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        labels = labels.astype(xp.int64, copy=False)
        y_pred, from_logits = _logits_behind(y_pred, self.from_logits)
        fn = SparseCrossentropyFromLogits if from_logits else SparseCrossentropyFromProbabilities
        return fn.apply(y_pred, labels=labels)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


class CategoricalCrossentropy(Loss):
    """One-hot (or soft) targets against per-class probabilities (or logits) on the last axis.

    label_smoothing s replaces the targets by t (1 - s) + s / classes, as Keras does.
    """

    name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        self.from_logits, self.label_smoothing = bool(from_logits), _label_smoothing(self.name, label_smoothing)

    def check_targets(self, y_true, output_shape):
        _check_same_shape(self.name, (None,) + np.shape(y_true)[1:], output_shape)

    def call(self, y_true, y_pred):
        target = _as_target(y_true, y_pred.data).astype(y_pred.dtype, copy=False)
        _check_same_shape(self.name, target.shape, y_pred.shape)
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / y_pred.shape[-1]
        y_pred, from_logits = _logits_behind(y_pred, self.from_logits)
        fn = CategoricalCrossentropyFromLogits if from_logits else CategoricalCrossentropyFromProbabilities
        return fn.apply(y_pred, target=target)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class _ElementwiseLoss(Loss):
    """A loss whose targets have the output's shape, element for element. Labels (n,) for an
    output (n, 1) are accepted, as Keras accepts them."""

    def check_targets(self, y_true, output_shape):
        shape = np.shape(y_true)
        if len(shape) == len(output_shape) - 1 and output_shape[-1] == 1:
            shape = shape + (1,)
        _check_same_shape(self.name, (None,) + tuple(shape[1:]), output_shape)

    def _target(self, y_true, y_pred):
        """y_true as an array like y_pred's: its device, dtype and shape."""
        target = _as_target(y_true, y_pred.data).astype(y_pred.dtype, copy=False)
        if target.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
            target = target[..., None]
        _check_same_shape(self.name, target.shape, y_pred.shape)
        return target


class BinaryCrossentropy(_ElementwiseLoss):
    """0/1 (or soft) targets against sigmoid probabilities (or logits), elementwise."""

    name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        self.from_logits, self.label_smoothing = bool(from_logits), _label_smoothing(self.name, label_smoothing)

    def check_targets(self, y_true, output_shape):
        super().check_targets(y_true, output_shape)
        y_true = np.asarray(y_true)
        if y_true.size and (y_true.min() < 0 or y_true.max() > 1):
            raise ValueError(
                f"{self.name}: targets must be in [0, 1], got values in [{y_true.min():g}, {y_true.max():g}]"
            )

    def call(self, y_true, y_pred):
        target = self._target(y_true, y_pred)
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        y_pred, from_logits = _logits_behind(y_pred, self.from_logits)
        fn = BinaryCrossentropyFromLogits if from_logits else BinaryCrossentropyFromProbabilities
        return fn.apply(y_pred, target=target)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class _Regression(_ElementwiseLoss):
    function = None

    def call(self, y_true, y_pred):
        return self.function.apply(y_pred, target=self._target(y_true, y_pred))


class MeanSquaredError(_Regression):
    name = "mean_squared_error"
    function = MeanSquaredErrorFunction


class MeanAbsoluteError(_Regression):
    name = "mean_absolute_error"
    function = MeanAbsoluteErrorFunction


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    return SparseCategoricalCrossentropy(from_logits=from_logits)(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    return CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    return BinaryCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return MeanSquaredError()(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return MeanAbsoluteError()(y_true, y_pred)


_CLASSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
}
_BY_CLASS_NAME = {cls.__name__: cls for cls in set(_CLASSES.values())}


def get(identifier):
    """A Loss from a name ("sparse_categorical_crossentropy", "mse", ...), a Loss, or a callable."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _CLASSES:
            raise ValueError(f"unknown loss {identifier!r}; known names: {', '.join(sorted(_CLASSES))}")
        return _CLASSES[key]()
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return _FunctionLoss(identifier)
    raise TypeError(f"loss must be a name, a Loss or a callable, got {type(identifier).__name__}")


class _FunctionLoss(Loss):
    """A plain function fn(y_true, y_pred) -> Tensor used as a loss (reduced by its mean)."""

    def __init__(self, fn):
        super().__init__(getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        value = as_tensor(self.fn(y_true, y_pred))
        return value if value.ndim == 0 else value.mean()

    def get_config(self):
        raise ValueError(f"the loss function {self.name!r} is Python code and cannot be saved as data")


serialize = utils.serialize_object


def deserialize(entry):
    return utils.deserialize_object(entry, _BY_CLASS_NAME, "loss")
