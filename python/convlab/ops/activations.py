"""Activation functions: relu, relu6, sigmoid, tanh, softmax, log_softmax, each with its backward.

softmax and log_softmax subtract the row maximum before exponentiating, so large logits
do not overflow: softmax(z) = softmax(z - max z), log_softmax(z) = z - max z - log sum exp(z - max z).
"""

from ..autograd import Function, array_module, as_tensor

__all__ = ["relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "linear"]


class ReluFunction(Function):
    """max(x, 0); the gradient passes where the output is positive (where x > 0; NaN stays NaN).

    One pass forward; the output, which the next layer keeps anyway, stands in for the mask."""

    def forward(self, x):
        self.y = array_module(x).maximum(x, 0)
        return self.y

    def backward(self, grad):
        return (grad * (self.y > 0),)


class Relu6Function(Function):
    """min(max(x, 0), 6): MobileNet's and EfficientNet-Lite's activation, bounded for low-precision inference."""

    def forward(self, x):
        self.x = x  # the mask is made in backward: inference never pays for it
        xp = array_module(x)
        y = xp.maximum(x, 0)
        return xp.minimum(y, 6, out=y)

    def backward(self, grad):
        x = self.x
        return (grad * ((x > 0) & (x < 6)),)


class SigmoidFunction(Function):
    def forward(self, x):
        # 1 / (1 + exp(-x)) written through tanh: no overflow for large |x|.
        self.y = 0.5 * (array_module(x).tanh(0.5 * x) + 1)
        return self.y

    def backward(self, grad):
        return (grad * self.y * (1 - self.y),)


class TanhFunction(Function):
    def forward(self, x):
        self.y = array_module(x).tanh(x)
        return self.y

    def backward(self, grad):
        return (grad * (1 - self.y * self.y),)


class SoftmaxFunction(Function):
    def forward(self, x, *, axis):
        xp = array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.y, self.axis = e / e.sum(axis=axis, keepdims=True), axis
        return self.y

    def backward(self, grad):
        # dL/dz_i = y_i * (g_i - sum_j g_j y_j)
        y = self.y
        return (y * (grad - (grad * y).sum(axis=self.axis, keepdims=True)),)


class LogSoftmaxFunction(Function):
    def forward(self, x, *, axis):
        xp = array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.axis = axis
        return self.y

    def backward(self, grad):
        # dL/dz_i = g_i - softmax_i * sum_j g_j
        softmax = array_module(grad).exp(self.y)
        return (grad - softmax * grad.sum(axis=self.axis, keepdims=True),)


def relu(x):
    return ReluFunction.apply(x)


def relu6(x):
    return Relu6Function.apply(x)


def sigmoid(x):
    out = SigmoidFunction.apply(x)
    out._logits = as_tensor(x)  # for binary crossentropy, see _logits below
    return out


def tanh(x):
    return TanhFunction.apply(x)


def softmax(x, axis=-1):
    out = SoftmaxFunction.apply(x, axis=axis)
    if axis in (-1, out.ndim - 1):
        # Keep the pre-activation scores on the output, as Keras does: a crossentropy given
        # these probabilities then works from the logits, exactly, instead of from clipped
        # probabilities whose gradient vanishes once a prediction saturates.
        out._logits = as_tensor(x)
    return out


def log_softmax(x, axis=-1):
    return LogSoftmaxFunction.apply(x, axis=axis)


def linear(x):
    """The identity (Keras' "linear" activation)."""
    return x
