"""Weight initializers with Keras' defaults and fan computation.

Conv kernels are (kh, kw, in, out): fan_in = kh * kw * in, fan_out = kh * kw * out (Keras
multiplies the two last axes by the receptive field, whatever the layer's kernel layout).
Every draw comes from convlab.utils' generator (seeded by set_seed) unless the initializer
is given a seed of its own.
"""

import math

import numpy as np

from . import utils

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "GlorotUniform",
    "GlorotNormal", "HeUniform", "HeNormal", "compute_fans", "get", "serialize",
]


def compute_fans(shape):
    """(fan_in, fan_out) of a weight shape, as Keras computes them."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _uniform(rng, low, high, shape, dtype):
    """Uniform in [low, high), drawn directly in float32 or float64 (no float64 temporary
    for a float32 weight: VGG16's fc1 alone has 103 million values)."""
    dtype = np.dtype(dtype)
    draw_dtype = dtype if dtype in (np.float32, np.float64) else np.float64
    values = rng.random(shape, dtype=draw_dtype)
    values *= high - low
    values += low
    return values.astype(dtype, copy=False)


class Initializer:
    def __call__(self, shape, dtype="float32"):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Zeros(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class _Random(Initializer):
    def __init__(self, seed=None):
        self.seed = seed

    def _generator(self):
        return utils.generator(self.seed)

    def get_config(self):
        return {"seed": self.seed}


class RandomNormal(_Random):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, dtype="float32"):
        return self._generator().normal(self.mean, self.stddev, shape).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(_Random):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape, dtype="float32"):
        return _uniform(self._generator(), self.minval, self.maxval, shape, dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class _VarianceScaling(_Random):
    """Keras' VarianceScaling: variance = scale / n, n = fan_in, fan_out or their average."""

    scale, mode, distribution = 1.0, "fan_avg", "uniform"

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._generator()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return _uniform(rng, -limit, limit, shape, dtype)
        # Truncated normal on [-2 std, 2 std]; 0.8796... is the std of a standard normal
        # truncated there, so the result has the intended variance.
        stddev = math.sqrt(variance) / 0.87962566103423978
        values = rng.standard_normal(shape)
        outside = np.abs(values) > 2
        while outside.any():
            values[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(values) > 2
        return (values * stddev).astype(dtype)


class GlorotUniform(_VarianceScaling):
    """Uniform in [-limit, limit], limit = sqrt(6 / (fan_in + fan_out)): Keras' default kernel init."""


class GlorotNormal(_VarianceScaling):
    distribution = "truncated_normal"


class HeUniform(_VarianceScaling):
    scale, mode = 2.0, "fan_in"


class HeNormal(_VarianceScaling):
    scale, mode, distribution = 2.0, "fan_in", "truncated_normal"


_BY_NAME = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal,
}


def get(identifier):
    """An initializer from a name ("glorot_uniform"), a config dict, or an initializer/callable."""
    if isinstance(identifier, str):
        key = utils.to_snake_case(identifier)
        if key not in _BY_NAME:
            raise ValueError(f"unknown initializer {identifier!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key]()
    if isinstance(identifier, dict):
        return _BY_NAME[utils.to_snake_case(identifier["class_name"])].from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise TypeError(f"an initializer must be a name, a config dict or a callable, got {identifier!r}")


def serialize(initializer):
    if isinstance(initializer, Initializer):
        return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
    return getattr(initializer, "__name__", repr(initializer))
