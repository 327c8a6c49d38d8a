"""BatchNormalization, Keras' way.

training=True:  normalize with the batch's mean and (biased) variance and move the moving
                statistics toward them: moving = moving * momentum + batch * (1 - momentum).
training=False: normalize with the moving statistics (inference).
trainable=False (a frozen layer, e.g. in fine-tuning) always runs in inference mode and
never updates its statistics, whatever `training` says (Keras >= 2.1 behaviour).

A moving variance is a variance: set_weights and load_model refuse one below 0 (or NaN), in
any channel, since inference would divide by the square root of a negative number and
return NaN everywhere.
"""

import numpy as np

from .. import initializers, ops
from ..autograd import _to_device
from .base import Layer

__all__ = ["BatchNormalization"]


class BatchNormalization(Layer):
    min_ndim = 2
    input_description = "(batch, ..., channels)"

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(
                f"{self._describe()}: only axis=-1 (channels last, as in every convlab layout) is "
                f"supported, got axis={axis!r}"
            )
        self.axis = axis
        self.momentum, self.epsilon = momentum, epsilon
        self.center, self.scale = center, scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self._describe()}: the channel axis of the input must be known, got {input_shape}")
        self._last_axis = channels
        self.gamma = self.add_weight("gamma", (channels,), self.gamma_initializer) if self.scale else None
        self.beta = self.add_weight("beta", (channels,), self.beta_initializer) if self.center else None
        self.moving_mean = self.add_weight("moving_mean", (channels,), self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", (channels,), self.moving_variance_initializer,
                                               trainable=False)

    def check_own_weight_values(self, values):
        if not self.built or id(self.moving_variance) not in values:
            return
        variance = np.asarray(_to_device(values[id(self.moving_variance)], "cpu"), dtype=np.float64).reshape(-1)
        bad = np.flatnonzero(~(variance >= 0))  # negative or NaN
        if bad.size:
            channel = int(bad[0])
            raise ValueError(
                f"{self._describe()}: moving_variance must be >= 0 in every channel (it is a variance), got "
                f"{float(variance[channel])} in channel {channel}" + (f" and {bad.size - 1} more channel(s)"
                                                                 if bad.size > 1 else "")
            )

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=False):
        return ops.batch_norm(inputs, self.gamma, self.beta, self.moving_mean, self.moving_variance,
                              training=training and self.trainable, momentum=self.momentum, epsilon=self.epsilon)

    def get_config(self):
        config = super().get_config()
        config.update(
            axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center, scale=self.scale,
            beta_initializer=initializers.serialize(self.beta_initializer),
            gamma_initializer=initializers.serialize(self.gamma_initializer),
            moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
            moving_variance_initializer=initializers.serialize(self.moving_variance_initializer),
        )
        return config
