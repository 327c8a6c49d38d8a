"""Layers that work across channels (Géron, ch. 14): LocalResponseNormalization (AlexNet,
GoogLeNet) and DepthMaxPooling (depth-wise max pooling). The math is in
convlab.ops.across_channels."""

from ..ops import across_channels
from .base import Layer

__all__ = ["LocalResponseNormalization", "DepthMaxPooling"]


class LocalResponseNormalization(Layer):
    """x / (bias + alpha * sum of x**2 over the 2 * depth_radius + 1 nearest channels) ** beta.

    The arguments of tf.nn.local_response_normalization, with its defaults; Géron's AlexNet
    uses depth_radius=2, bias=1, alpha=0.00002, beta=0.75. No weights.
    """

    min_ndim = 2
    input_description = "(batch, ..., channels)"

    def __init__(self, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5, **kwargs):
        super().__init__(**kwargs)
        where = self._describe()
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, int) or depth_radius < 0:
            raise ValueError(f"{where}: depth_radius must be an int >= 0, got {depth_radius!r}")
        if not isinstance(bias, (int, float)) or not bias > 0:
            raise ValueError(f"{where}: bias must be a number > 0, got {bias!r}")
        if not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise ValueError(f"{where}: alpha must be a number >= 0, got {alpha!r}")
        if not isinstance(beta, (int, float)):
            raise ValueError(f"{where}: beta must be a number, got {beta!r}")
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, float(bias), float(alpha), float(beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        return across_channels.local_response_normalization(inputs, self.depth_radius, self.bias, self.alpha,
                                                            self.beta)

    def get_config(self):
        return dict(super().get_config(), depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
                    beta=self.beta)


class DepthMaxPooling(Layer):
    """Max pooling along the channel axis: windows of pool_size channels moved by strides
    (default pool_size), no padding; height and width are kept. Géron's depth-wise pooling
    (tf.nn.max_pool with ksize=(1, 1, 1, 3), strides=(1, 1, 1, 3)) is DepthMaxPooling(3)."""

    min_ndim = 2
    input_description = "(batch, ..., channels)"

    def __init__(self, pool_size=3, strides=None, **kwargs):
        super().__init__(**kwargs)
        where = self._describe()
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"{where}: pool_size must be a positive int, got {pool_size!r}")
        if strides is not None and (isinstance(strides, bool) or not isinstance(strides, int) or strides < 1):
            raise ValueError(f"{where}: strides must be a positive int or None (= pool_size), got {strides!r}")
        self.pool_size = pool_size
        self.strides = pool_size if strides is None else strides

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels < self.pool_size:
            raise ValueError(f"{self._describe()}: the input has {channels} channels, fewer than "
                             f"pool_size={self.pool_size}")
        groups = None if channels is None else (channels - self.pool_size) // self.strides + 1
        return tuple(input_shape[:-1]) + (groups,)

    def call(self, inputs):
        return across_channels.depth_max_pool(inputs, self.pool_size, self.strides)

    def get_config(self):
        return dict(super().get_config(), pool_size=self.pool_size, strides=self.strides)
