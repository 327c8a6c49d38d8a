"""Input: where a functional model starts. `Input(shape)` returns a symbolic tensor whose
shape has None for the batch axis, made by an InputLayer."""

from .base import KerasTensor, Layer, Node

__all__ = ["InputLayer", "Input"]


class InputLayer(Layer):
    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError(f"{self._describe()}: give the shape of one sample, e.g. Input(shape=(28, 28, 1))")
            if isinstance(shape, int):
                shape = (shape,)
            batch_shape = (batch_size,) + tuple(shape)
        batch_shape = tuple(batch_shape)
        if any(n is not None and (not isinstance(n, int) or n < 0) for n in batch_shape):
            raise ValueError(f"{self._describe()}: shape must hold non-negative ints or None, got {batch_shape[1:]}")
        self.batch_shape = batch_shape
        self.built = True
        self._inbound_nodes.append(Node(self, [], [KerasTensor(batch_shape, self.dtype)], {}))

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {"batch_shape": self.batch_shape, "dtype": self.dtype, "name": self.name}


def Input(shape=None, batch_size=None, name=None, dtype=None, batch_shape=None):  # noqa: N802 - Keras' name
    """A symbolic input tensor of shape (batch_size, *shape); batch_size None means any."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, batch_shape=batch_shape).output
