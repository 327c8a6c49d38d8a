"""Conv2D, Conv2DTranspose, DepthwiseConv2D and SeparableConv2D.

They share one base, `_Conv`: the hyperparameters under Keras' names, the input checks,
and the output-shape arithmetic, which is the kernels' own geometry
(convlab.kernels.conv2d_output_shape / conv2d_transpose_output_shape), so layers and
kernels can never disagree about a size.
"""

from .. import activations, initializers, kernels, ops
from .base import MAX_INT, Layer, check_int, is_int

__all__ = ["Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "normalize_tuple", "normalize_padding",
           "spatial_output_shape"]

def normalize_tuple(value, name, layer, minimum=1):
    """An int or a pair of ints, each in [minimum, 2**31 - 1] -> (int, int); errors name the
    argument and the layer (floats and bools are refused, as Keras refuses them)."""
    if is_int(value):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        pair = tuple(value)
    else:
        pair = None
    if pair is None or not all(minimum <= v <= MAX_INT for v in pair):
        raise ValueError(f"{layer}: {name} must be an int in [{minimum}, {MAX_INT}] or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


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
        self.filters = None if filters is None else check_int(filters, "filters", where)
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
        self.compute_output_shape(input_shape)  # a window larger than the input fails here, before any allocation
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
            output_padding = normalize_tuple(output_padding, "output_padding", self._describe(), minimum=0)
            if any(not p < s for p, s in zip(output_padding, self.strides)):
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
        self.depth_multiplier = check_int(depth_multiplier, "depth_multiplier", self._describe())
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
        self.depth_multiplier = check_int(depth_multiplier, "depth_multiplier", self._describe())
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
