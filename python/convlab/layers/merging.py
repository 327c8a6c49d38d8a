"""Add, Multiply and Concatenate (and their functional forms add([...]), multiply([...]) and
concatenate([...]))."""

from .. import ops
from .base import Layer, format_shapes

__all__ = ["Add", "Multiply", "Concatenate", "add", "multiply", "concatenate"]


class _Merge(Layer):
    def _check_input_shape(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(
                f"{self._describe()} needs a list of at least 2 inputs, got {format_shapes(input_shape)}"
            )


class Add(_Merge):
    """The elementwise sum of inputs of one shape (a residual connection)."""

    def _check_input_shape(self, input_shape):
        super()._check_input_shape(input_shape)
        first = input_shape[0]
        for shape in input_shape[1:]:
            if len(shape) != len(first) or any(
                a is not None and b is not None and a != b for a, b in zip(shape, first)
            ):
                raise ValueError(
                    f"{self._describe()} needs inputs of one shape, got {format_shapes(input_shape)}"
                )

    def compute_output_shape(self, input_shape):
        return tuple(next((n for n in sizes if n is not None), None) for sizes in zip(*input_shape))

    def call(self, inputs):
        return ops.add_n(inputs)


class Multiply(_Merge):
    """The elementwise product of its inputs. Shapes broadcast as numpy's do, so a
    (batch, 1, 1, channels) map of weights scales every pixel's channels (a squeeze-and-
    excitation block's last step)."""

    def _check_input_shape(self, input_shape):
        super()._check_input_shape(input_shape)
        self._broadcast(input_shape)

    def _broadcast(self, input_shape):
        rank = max(len(s) for s in input_shape)
        padded = [(1,) * (rank - len(s)) + tuple(s) for s in input_shape]
        result = []
        for sizes in zip(*padded):
            known = {n for n in sizes if n is not None and n != 1}
            if len(known) > 1:
                raise ValueError(f"{self._describe()} needs inputs whose shapes broadcast (each axis equal "
                                 f"or 1), got {format_shapes(input_shape)}")
            result.append(known.pop() if known else (None if None in sizes else 1))
        return tuple(result)

    def compute_output_shape(self, input_shape):
        return self._broadcast(input_shape)

    def call(self, inputs):
        product = inputs[0]
        for tensor in inputs[1:]:
            product = ops.multiply(product, tensor)
        return product


class Concatenate(_Merge):
    """Joins inputs along `axis` (default: channels); other axes must agree."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def _check_input_shape(self, input_shape):
        super()._check_input_shape(input_shape)
        rank = len(input_shape[0])
        if not -rank <= self.axis < rank or any(len(s) != rank for s in input_shape):
            raise ValueError(
                f"{self._describe()}: cannot concatenate along axis {self.axis} inputs of shapes "
                f"{format_shapes(input_shape)}"
            )
        axis = self.axis % rank
        for position in range(rank):
            sizes = {s[position] for s in input_shape if s[position] is not None}
            if position != axis and len(sizes) > 1:
                raise ValueError(
                    f"{self._describe()}: inputs must match on every axis but the concatenation axis "
                    f"{self.axis}, got {format_shapes(input_shape)}"
                )

    def compute_output_shape(self, input_shape):
        axis = self.axis % len(input_shape[0])
        sizes = [s[axis] for s in input_shape]
        output = list(input_shape[0])
        output[axis] = None if None in sizes else sum(sizes)
        for position in range(len(output)):
            if output[position] is None and position != axis:
                output[position] = next((s[position] for s in input_shape if s[position] is not None), None)
        return tuple(output)

    def call(self, inputs):
        return ops.concatenate(inputs, axis=self.axis)

    def get_config(self):
        return dict(super().get_config(), axis=self.axis)


def add(inputs, **kwargs):
    """Functional form: add([a, b]) == Add()([a, b])."""
    return Add(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Functional form: concatenate([a, b]) == Concatenate()([a, b])."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Functional form: multiply([a, b]) == Multiply()([a, b])."""
    return Multiply(**kwargs)(inputs)
