"""Conv2D, Conv2DTranspose, DepthwiseConv2D and SeparableConv2D.

They share one base, `_Conv`: the hyperparameters under Keras' names, the input checks,
and the output-shape arithmetic, which is the kernels' own geometry
(convlab.kernels.conv2d_output_shape / conv2d_transpose_output_shape), so layers and
kernels can never disagree about a size.
"""

from .. import activations, initializers, kernels, ops
from .base import Layer

__all__ = ["Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "normalize_tuple", "normalize_padding",
           "spatial_output_shape"]


def normalize_tuple(value, name, layer):
    """An int or a pair of positive ints -> (int, int); errors name the argument and layer."""
    try:
        pair = (int(value),) * 2 if isinstance(value, int) else tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{layer}: {name} must be a positive int or a pair of them, got {value!r}")
    return pair


def normalize_padding(value, layer):
    padding = value.lower() if isinstance(value, str) else value
    if padding not in ("valid", "same"):
        raise ValueError(f"{layer}: padding must be 'valid' or 'same', got {value!r}")
    return padding


def spatial_output_shape(shape_fn, input_shape, *args, **kwargs):
    """shape_fn (a kernels geometry helper) on an input shape whose height or width may be
    None (a fully convolutional model): an unknown input size gives an unknown output size."""
    unknown = [axis for axis in (1, 2) if input_shape[axis] is None]
    known = tuple(1024 if axis in unknown else n for axis, n in enumerate(input_shape))
    output_shape = shape_fn(known, *args, **kwargs)
    return tuple(None if axis in unknown else n for axis, n in enumerate(output_shape))


class _Conv(Layer):
    """What every conv-like layer shares: hyperparameters, checks, output shape."""

    input_ndim = 4
    input_description = "(batch, height, width, channels)"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        where = self._describe()
        if filters is not None and (not isinstance(filters, int) or filters < 1):
            raise ValueError(f"{where}: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, "kernel_size", where)
        self.strides = normalize_tuple(strides, "strides", where)
        self.padding = normalize_padding(padding, where)
        self.dilation_rate = normalize_tuple(dilation_rate, "dilation_rate", where)
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError(f"{where}: strides > 1 together with dilation_rate > 1 is not supported (as in Keras)")
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.bias_initializer = initializers.get(bias_initializer)

    @property
    def geometry(self):
        return {"strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate}

    def output_channels(self, in_channels):
        return self.filters

    def compute_output_shape(self, input_shape):
        return spatial_output_shape(kernels.conv2d_output_shape, input_shape, self.kernel_size,
                                    self.output_channels(input_shape[-1]), **self.geometry)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"{self._describe()}: the channel axis of the input must be known, got {input_shape}")
        self._last_axis = input_shape[-1]
        self.build_kernels(input_shape[-1])
        self.bias = (self.add_weight("bias", (self.output_channels(input_shape[-1]),), self.bias_initializer)
                     if self.use_bias else None)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size, **self.geometry,
            activation=activations.serialize(self.activation), use_bias=self.use_bias,
            bias_initializer=initializers.serialize(self.bias_initializer),
        )
        return config


class Conv2D(_Conv):
    """y = activation(conv2d(x, kernel) + bias), kernel (kh, kw, in_channels, filters)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         bias_initializer, **kwargs)
        self.kernel_initializer = initializers.get(kernel_initializer)

    def build_kernels(self, in_channels):
        self.kernel = self.add_weight("kernel", self.kernel_size + (in_channels, self.filters), self.kernel_initializer)

    def call(self, inputs):
        return self.activation(ops.conv2d(inputs, self.kernel, self.bias, **self.geometry))

    def get_config(self):
        return dict(super().get_config(), kernel_initializer=initializers.serialize(self.kernel_initializer))


class Conv2DTranspose(_Conv):
    """The transpose (gradient) of a Conv2D: upsamples by `strides`. Kernel (kh, kw, filters, in)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         bias_initializer, **kwargs)
        if output_padding is not None:
            output_padding = (output_padding,) * 2 if isinstance(output_padding, int) else tuple(output_padding)
            if any(not 0 <= p < s for p, s in zip(output_padding, self.strides)):
                raise ValueError(
                    f"{self._describe()}: output_padding {output_padding} must be >= 0 and smaller than "
                    f"strides {self.strides}"
                )
        self.output_padding = output_padding
        self.kernel_initializer = initializers.get(kernel_initializer)

    @property
    def geometry(self):
        return dict(super().geometry, output_padding=self.output_padding)

    def compute_output_shape(self, input_shape):
        return spatial_output_shape(kernels.conv2d_transpose_output_shape, input_shape, self.kernel_size,
                                    self.filters, **self.geometry)

    def build_kernels(self, in_channels):
        self.kernel = self.add_weight("kernel", self.kernel_size + (self.filters, in_channels), self.kernel_initializer)

    def call(self, inputs):
        return self.activation(ops.conv2d_transpose(inputs, self.kernel, self.bias, **self.geometry))

    def get_config(self):
        return dict(super().get_config(), kernel_initializer=initializers.serialize(self.kernel_initializer))


class DepthwiseConv2D(_Conv):
    """One (kh, kw) filter per input channel and multiplier: out channels = in * depth_multiplier."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, dilation_rate=1,
                 activation=None, use_bias=True, depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(None, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         bias_initializer, **kwargs)
        if not isinstance(depth_multiplier, int) or depth_multiplier < 1:
            raise ValueError(f"{self._describe()}: depth_multiplier must be a positive int, got {depth_multiplier!r}")
        self.depth_multiplier = depth_multiplier
        self.depthwise_initializer = initializers.get(depthwise_initializer)

    def output_channels(self, in_channels):
        return None if in_channels is None else in_channels * self.depth_multiplier

    def build_kernels(self, in_channels):
        self.kernel = self.add_weight("kernel", self.kernel_size + (in_channels, self.depth_multiplier),
                                      self.depthwise_initializer)

    def call(self, inputs):
        return self.activation(ops.depthwise_conv2d(inputs, self.kernel, self.bias, **self.geometry))

    def get_config(self):
        config = super().get_config()
        del config["filters"]
        return dict(config, depth_multiplier=self.depth_multiplier,
                    depthwise_initializer=initializers.serialize(self.depthwise_initializer))


class SeparableConv2D(_Conv):
    """A DepthwiseConv2D (strides, padding, dilation) followed by a 1x1 Conv2D to `filters`."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, depth_multiplier=1,
                 activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         bias_initializer, **kwargs)
        if not isinstance(depth_multiplier, int) or depth_multiplier < 1:
            raise ValueError(f"{self._describe()}: depth_multiplier must be a positive int, got {depth_multiplier!r}")
        self.depth_multiplier = depth_multiplier
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)

    def build_kernels(self, in_channels):
        self.depthwise_kernel = self.add_weight(
            "depthwise_kernel", self.kernel_size + (in_channels, self.depth_multiplier), self.depthwise_initializer)
        self.pointwise_kernel = self.add_weight(
            "pointwise_kernel", (1, 1, in_channels * self.depth_multiplier, self.filters), self.pointwise_initializer)

    def call(self, inputs):
        return self.activation(ops.separable_conv2d(inputs, self.depthwise_kernel, self.pointwise_kernel, self.bias,
                                                    **self.geometry))

    def get_config(self):
        return dict(super().get_config(), depth_multiplier=self.depth_multiplier,
                    depthwise_initializer=initializers.serialize(self.depthwise_initializer),
                    pointwise_initializer=initializers.serialize(self.pointwise_initializer))
