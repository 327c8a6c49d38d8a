"""ResidualUnit: Géron's custom layer for ResNet-34 (ch. 14), with the bottleneck unit of
ResNet-50 and the squeeze-and-excitation unit of SE-ResNet as options.

    main path    basic:       Conv 3x3 (strides) -> BN -> act -> Conv 3x3 -> BN
                 bottleneck:  Conv 1x1 -> BN -> act -> Conv 3x3 (strides) -> BN -> act -> Conv 1x1 (4 filters) -> BN
                 [SE: GAP -> dense C/ratio relu -> dense C sigmoid -> scale the main path's maps]
    skip path    the input; or Conv 1x1 (strides) -> BN when the stride is not 1 or the
                 channels change (the bottleneck's first unit of a stage)
    output       act(main + skip)

Every conv is Géron's DefaultConv2D: "same" padding, no bias (the BN after it has one),
he_normal initialization. (The bottleneck puts the stride on the 3x3 conv, as torchvision's
"ResNet v1.5" does; the parameter count is the same either way.)

The unit is one layer holding its sublayers, as in Géron's listing; its weights are theirs.
"""

from .. import activations, ops
from .base import Layer
from .convolutional import Conv2D
from .normalization import BatchNormalization
from .pooling import GlobalAveragePooling2D

__all__ = ["ResidualUnit"]


def _default_conv(filters, kernel_size=3, strides=1, dtype=None):
    return Conv2D(filters, kernel_size, strides=strides, padding="same", kernel_initializer="he_normal",
                  use_bias=False, dtype=dtype)


class ResidualUnit(Layer):
    input_ndim = 4
    input_description = "(batch, height, width, channels)"

    def __init__(self, filters, strides=1, activation="relu", bottleneck=False, squeeze_excite=False, se_ratio=16,
                 **kwargs):
        super().__init__(**kwargs)
        where = self._describe()
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"{where}: filters must be a positive int, got {filters!r}")
        if strides not in (1, 2):
            raise ValueError(f"{where}: strides must be 1 or 2, got {strides!r}")
        if isinstance(se_ratio, bool) or not isinstance(se_ratio, int) or se_ratio < 1:
            raise ValueError(f"{where}: se_ratio must be a positive int, got {se_ratio!r}")
        self.filters, self.strides, self.bottleneck = filters, strides, bool(bottleneck)
        self.squeeze_excite, self.se_ratio = bool(squeeze_excite), se_ratio
        self.activation = activations.get(activation)
        self.output_channels = 4 * filters if self.bottleneck else filters
        dtype = self.dtype  # the sublayers compute in the unit's dtype (float64 for gradcheck)
        if self.bottleneck:
            self.main_layers = [_default_conv(filters, 1, dtype=dtype), BatchNormalization(dtype=dtype),
                                self.activation, _default_conv(filters, 3, strides, dtype=dtype),
                                BatchNormalization(dtype=dtype), self.activation,
                                _default_conv(4 * filters, 1, dtype=dtype), BatchNormalization(dtype=dtype)]
        else:
            self.main_layers = [_default_conv(filters, 3, strides, dtype=dtype), BatchNormalization(dtype=dtype),
                                self.activation, _default_conv(filters, dtype=dtype), BatchNormalization(dtype=dtype)]
        if self.squeeze_excite:
            squeezed = max(1, self.output_channels // se_ratio)
            self.excite_layers = [GlobalAveragePooling2D(keepdims=True, dtype=dtype),
                                  Conv2D(squeezed, 1, activation="relu", dtype=dtype),
                                  Conv2D(self.output_channels, 1, activation="sigmoid", dtype=dtype)]
        else:
            self.excite_layers = []
        self.skip_layers = []  # decided in build, when the input's channels are known
        for layer in self.main_layers + self.excite_layers:
            if isinstance(layer, Layer):
                self._sublayers.append(layer)

    def build(self, input_shape):
        self._last_axis = input_shape[-1]
        if self.strides > 1 or input_shape[-1] != self.output_channels:
            self.skip_layers = [_default_conv(self.output_channels, 1, self.strides, dtype=self.dtype),
                                BatchNormalization(dtype=self.dtype)]
            self._sublayers.extend(self.skip_layers)
        # Build every sublayer by shape arithmetic alone (no forward pass: a ResNet-50 at
        # 224x224 is built to count its parameters in a fraction of a second).
        shape = input_shape
        for layer in self.main_layers:
            shape = _build(layer, shape)
        main_shape = shape
        for layer in self.excite_layers:
            shape = _build(layer, shape)
        shape = input_shape
        for layer in self.skip_layers:
            shape = _build(layer, shape)
        self._output_shape = main_shape

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for layer in self.main_layers:
            if isinstance(layer, Layer):
                shape = layer.compute_output_shape(shape)
        return shape

    def call(self, inputs, training=False):
        z = inputs
        for layer in self.main_layers:
            z = _apply(layer, z, training)
        if self.excite_layers:
            scale = z
            for layer in self.excite_layers:
                scale = _apply(layer, scale, training)
            # scale first: convlab.autograd's graph walk (as of this writing) orders a tensor
            # used twice correctly only when the branch that reaches it last is listed last
            z = ops.multiply(scale, z)
        skip = inputs
        for layer in self.skip_layers:
            skip = _apply(layer, skip, training)
        return self.activation(z + skip)

    def get_config(self):
        return dict(super().get_config(), filters=self.filters, strides=self.strides,
                    activation=activations.serialize(self.activation), bottleneck=self.bottleneck,
                    squeeze_excite=self.squeeze_excite, se_ratio=self.se_ratio)


def _build(layer, shape):
    if not isinstance(layer, Layer):  # an activation function
        return shape
    if not layer.built:
        layer.build(shape)
    return layer.compute_output_shape(shape)


def _apply(layer, x, training):
    if not isinstance(layer, Layer):
        return layer(x)
    return layer(x, training=training) if layer._call_takes_training else layer(x)
