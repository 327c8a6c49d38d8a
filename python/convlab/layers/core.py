"""Dense, Activation, ReLU, Flatten, Dropout, Rescaling, ZeroPadding2D and Lambda."""

import math

import numpy as np

from .. import activations, initializers, ops, utils
from .base import MAX_INT, Layer, check_int, is_int

__all__ = ["Dense", "Activation", "ReLU", "Flatten", "Dropout", "Rescaling", "ZeroPadding2D", "Lambda"]


class Dense(Layer):
    """y = activation(x @ kernel + bias), kernel (features, units), on (batch, features) inputs."""

    input_ndim = 2
    input_description = "(batch, features)"
    input_hint = "put a Flatten() or GlobalAveragePooling2D() layer before it"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = check_int(units, "units", self._describe())
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self._describe()}: the feature axis of the input must be known, got {input_shape}")
        self._last_axis = features
        self.kernel = self.add_weight("kernel", (features, self.units), self.kernel_initializer)
        self.bias = self.add_weight("bias", (self.units,), self.bias_initializer) if self.use_bias else None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def call(self, inputs):
        return self.activation(ops.dense(inputs, self.kernel, self.bias))

    def get_config(self):
        return dict(super().get_config(), units=self.units, activation=activations.serialize(self.activation),
                    use_bias=self.use_bias, kernel_initializer=initializers.serialize(self.kernel_initializer),
                    bias_initializer=initializers.serialize(self.bias_initializer))


class Activation(Layer):
    """Applies an activation: a name ("relu", "sigmoid", "softmax", "tanh", "linear"), None or a callable."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        return self.activation(inputs)

    def get_config(self):
        return dict(super().get_config(), activation=activations.serialize(self.activation))


class ReLU(Layer):
    """Keras' ReLU layer: x for x > 0, negative_slope * x below, capped at max_value.

    ReLU(6.0) is MobileNet's ReLU6, min(max(x, 0), 6) (ops.relu6); other settings are built
    from relu and maximum: the gradient is 1 where the output is x, negative_slope below zero
    and 0 above the cap.
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and not max_value >= 0:
            raise ValueError(f"{self._describe()}: max_value must be None or >= 0, got {max_value!r}")
        if not negative_slope >= 0:
            raise ValueError(f"{self._describe()}: negative_slope must be >= 0, got {negative_slope!r}")
        if threshold != 0:
            raise ValueError(f"{self._describe()}: only threshold=0 is supported, got {threshold!r}")
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        if self.max_value == 6 and not self.negative_slope:
            return ops.relu6(inputs)
        y = ops.relu(inputs)
        if self.negative_slope:
            y = y - ops.relu(-inputs) * self.negative_slope
        if self.max_value is not None:  # min(y, cap) = -max(-y, -cap)
            y = -ops.maximum(-y, -float(self.max_value))
        return y

    def get_config(self):
        return dict(super().get_config(), max_value=self.max_value, negative_slope=self.negative_slope,
                    threshold=self.threshold)


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    min_ndim = 1

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else math.prod(rest))

    def call(self, inputs):
        return ops.flatten(inputs) if inputs.ndim > 1 else ops.reshape(inputs, (inputs.shape[0], 1))


class Dropout(Layer):
    """In training, zero each value with probability `rate` and scale the rest by 1/(1 - rate);
    in inference, the identity."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not 0 <= rate < 1:
            raise ValueError(f"{self._describe()}: rate must be a number in [0, 1), got {rate!r}")
        self.rate, self.noise_shape, self.seed = rate, noise_shape, seed
        # A generator of its own: successive calls draw fresh masks, and a seed repeats them.
        self._generator = utils.generator(seed if seed is not None else utils.derived_seed())

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        return ops.dropout(inputs, self.rate, seed=self._generator, noise_shape=self.noise_shape)

    def get_config(self):
        return dict(super().get_config(), rate=self.rate, noise_shape=self.noise_shape, seed=self.seed)


class Rescaling(Layer):
    """x * scale + offset, e.g. Rescaling(1./255) to bring pixels into [0, 1]."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def _convert_input(self, value):
        tensor = super()._convert_input(value)
        return tensor if tensor.is_floating else tensor.astype(self.dtype)  # uint8 images, say

    def call(self, inputs):
        return ops.rescaling(inputs, self.scale, self.offset)

    def get_config(self):
        scale, offset = (np.asarray(v).tolist() for v in (self.scale, self.offset))
        return dict(super().get_config(), scale=scale, offset=offset)


class ZeroPadding2D(Layer):
    """Zeros around height and width. padding: int, (sym_h, sym_w), or ((top, bottom), (left, right))."""

    input_ndim = 4
    input_description = "(batch, height, width, channels)"

    def __init__(self, padding=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.padding = self._normalize(padding)

    def _normalize(self, padding):
        try:
            if is_int(padding):
                result = ((padding, padding), (padding, padding))
            elif all(is_int(p) for p in padding):
                (h, w) = padding
                result = ((h, h), (w, w))
            else:
                (top, bottom), (left, right) = padding
                result = ((top, bottom), (left, right))
        except (TypeError, ValueError):
            result = None
        if result is None or not all(is_int(p) and 0 <= p <= MAX_INT for pair in result for p in pair):
            raise ValueError(
                f"{self._describe()}: padding must be an int, (symmetric_height, symmetric_width) or "
                f"((top, bottom), (left, right)) of ints in [0, {MAX_INT}], got {padding!r}"
            )
        return tuple((int(a), int(b)) for a, b in result)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        n, h, w, c = input_shape
        return (n, None if h is None else h + top + bottom, None if w is None else w + left + right, c)

    def call(self, inputs):
        return ops.zero_padding2d(inputs, self.padding)

    def get_config(self):
        return dict(super().get_config(), padding=self.padding)


class Lambda(Layer):
    """Wraps a function of Tensors (written with convlab.ops or Tensor methods) as a layer.

    The output shape is inferred by running the function on zeros unless `output_shape`
    (without the batch axis) is given.
    """

    def __init__(self, function, output_shape=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"{self._describe()}: function must be callable, got {function!r}")
        self.function = function
        self._output_shape = None if output_shape is None else tuple(output_shape)
        self.arguments = dict(arguments or {})

    def compute_output_shape(self, input_shape):
        if self._output_shape is not None:
            batch = input_shape[0][0] if isinstance(input_shape, list) else input_shape[0]
            return (batch,) + self._output_shape
        return super().compute_output_shape(input_shape)

    def call(self, inputs):
        return self.function(inputs, **self.arguments)

    def get_config(self):
        return dict(super().get_config(), function=getattr(self.function, "__name__", repr(self.function)),
                    output_shape=self._output_shape, arguments=self.arguments)

    @classmethod
    def from_config(cls, config):
        raise ValueError(
            f"Lambda layer '{config.get('name')}': its function ({config.get('function')}) is code, and "
            "configs never hold code; rebuild the Lambda layer in Python"
        )
