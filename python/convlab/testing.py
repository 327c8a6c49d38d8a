"""Tools for checking gradients and comparing arrays: the ones convlab's own tests use.

`gradcheck` compares an analytic gradient with central finite differences. Given a
function f and a random upstream gradient g (seeded), the scalar L = sum(f(x) * g) has
dL/dx = the vector-Jacobian product that a backward pass computes, and each element of it
can also be estimated as (L(x + eps e_i) - L(x - eps e_i)) / (2 eps). The error of that
estimate is O(eps^2) from truncation plus O(unit roundoff / eps) from cancellation, which
is why the inputs must be float64: in float32 no eps makes both small.

Example, checking a hand-written backward:

    >>> import numpy as np
    >>> from convlab.testing import gradcheck
    >>> x = np.random.default_rng(0).standard_normal((3, 4))
    >>> gradcheck(np.sin, [x], grad_fn=lambda g, x: [g * np.cos(x)])
    True

and, without grad_fn, the gradient convlab's autograd computes (fn takes and returns
convlab.autograd.Tensor objects):

    >>> from convlab import ops
    >>> x, w = np.random.default_rng(1).standard_normal((1, 4, 4, 2)), np.ones((3, 3, 2, 2))
    >>> gradcheck(lambda x, w: ops.conv2d(x, w, padding="same"), [x, w])
    True
"""

import numpy as np

__all__ = ["GradcheckError", "gradcheck", "numerical_gradient", "assert_close"]


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences."""


def _to_numpy(value):
    """A numpy array from a numpy array, a convlab Tensor, or anything array-like."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "numpy"):
        value = value.numpy()
    elif hasattr(value, "get"):  # a CuPy array
        value = value.get()
    return np.asarray(value)


def _check_inputs(inputs):
    if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
        raise TypeError(
            f"inputs must be a list or tuple of numpy arrays, got {type(inputs).__name__}; "
            "for a single array x pass [x]"
        )
    for index, array in enumerate(inputs):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"inputs[{index}] must be a numpy array, got {type(array).__name__}")
        if array.dtype != np.float64:
            raise TypeError(
                f"inputs[{index}] has dtype {array.dtype}; gradcheck needs float64 inputs "
                "(finite differences in lower precision are dominated by roundoff)"
            )


def numerical_gradient(fn, inputs, grad_output, eps=1e-6, *, indices=None):
    """Central finite differences of sum(fn(*inputs) * grad_output) with respect to each input.

    fn takes numpy arrays and returns one array of grad_output's shape. Returns a list of
    arrays shaped like the inputs. `indices`, if given, holds one entry per input: None to
    estimate every element, or a sequence of flat indices to estimate only those (the
    other elements are NaN). The inputs themselves are never modified.

        >>> import numpy as np
        >>> x = np.array([1.0, 2.0])
        >>> numerical_gradient(lambda x: x**2, [x], np.ones(2))[0].round(6)
        array([2., 4.])
    """
    _check_inputs(inputs)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    grad_output = np.asarray(grad_output, dtype=np.float64)
    arrays = [np.array(a, dtype=np.float64, copy=True, order="C") for a in inputs]
    if indices is None:
        indices = [None] * len(arrays)
    if len(indices) != len(arrays):
        raise ValueError(f"indices has {len(indices)} entries for {len(arrays)} inputs")

    gradients = []
    for array, chosen in zip(arrays, indices):
        gradient = np.full(array.shape, np.nan) if chosen is not None else np.zeros(array.shape)
        flat = array.reshape(-1)  # a view: writing to it perturbs the array fn receives
        flat_gradient = gradient.reshape(-1)
        for i in range(array.size) if chosen is None else chosen:
            original = flat[i]
            flat[i] = original + eps
            # Copies: an fn that returns a view of its input (reshape, slicing) would
            # otherwise see its "plus" result change under the next perturbation.
            plus = np.array(_to_numpy(fn(*arrays)), copy=True)
            flat[i] = original - eps
            minus = np.array(_to_numpy(fn(*arrays)), copy=True)
            flat[i] = original
            # Subtract before summing: the large common part cancels element by element.
            flat_gradient[i] = np.sum((plus - minus) * grad_output) / (2 * eps)
        gradients.append(gradient)
    return gradients


def _autograd_gradients(fn, arrays, grad_output):
    from convlab.autograd import Tensor

    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(grad_output.copy())
    gradients = []
    for tensor in tensors:
        grad = tensor.grad
        if grad is None:  # no path from this input to the output: the gradient is zero
            gradients.append(np.zeros(tuple(tensor.shape)))
        else:
            gradients.append(np.asarray(grad.numpy() if hasattr(grad, "numpy") else grad))
    return gradients


def _autograd_evaluator(fn):
    def evaluate(*arrays):
        from convlab.autograd import Tensor

        return _to_numpy(fn(*[Tensor(a) for a in arrays]))

    return evaluate


def gradcheck(fn, inputs, grad_fn=None, *, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0,
              raise_exception=True, max_elements=None):
    """Check the gradient of fn at `inputs` against central finite differences.

    fn        the function; takes len(inputs) arguments and returns one array.
    inputs    list or tuple of float64 numpy arrays (anything else: TypeError).
    grad_fn   called as grad_fn(g, *inputs) with the upstream gradient g (shape of fn's
              output); returns one gradient per input, or None for an input that is not
              differentiated (it is then not checked). If grad_fn is None, fn takes and
              returns convlab.autograd.Tensor objects and the gradient is the one
              out.backward(g) leaves in each input's .grad.
    eps       finite-difference step.
    atol, rtol  an element passes when |analytic - numeric| <= atol + rtol * |numeric|.
    seed      seeds g (standard normal) and the choice of elements under max_elements.
    max_elements  if an input has more elements than this, check a random subset of
              this many (each checked element costs two calls of fn).
    raise_exception  on a mismatch raise GradcheckError (an AssertionError) if True,
              return False if False.

    Returns True when every checked element agrees. The error message names the input,
    the worst element, its analytic and numeric values, and the largest absolute and
    relative errors.

        >>> import numpy as np
        >>> x = np.array([[0.5, -1.0], [2.0, 3.0]])
        >>> gradcheck(lambda x: x**3, [x], grad_fn=lambda g, x: [3 * x**2 * g])
        True
        >>> gradcheck(lambda x: x**3, [x], grad_fn=lambda g, x: [3 * x * g], raise_exception=False)
        False
    """
    _check_inputs(inputs)
    if max_elements is not None and max_elements < 1:
        raise ValueError(f"max_elements must be a positive int or None, got {max_elements}")
    arrays = [np.array(a, copy=True, order="C") for a in inputs]
    evaluate = _autograd_evaluator(fn) if grad_fn is None else fn

    output = _to_numpy(evaluate(*arrays))
    if output.dtype != np.float64:
        raise TypeError(
            f"fn returned an array of dtype {output.dtype}; gradcheck needs float64 outputs"
        )
    rng = np.random.default_rng(seed)
    grad_output = np.asarray(rng.standard_normal(output.shape))  # an array even for a 0-d output

    if grad_fn is None:
        analytic = _autograd_gradients(fn, arrays, grad_output)
    else:
        analytic = grad_fn(grad_output.copy(), *[a.copy() for a in arrays])
        if isinstance(analytic, np.ndarray) and len(arrays) == 1:
            analytic = [analytic]
        analytic = list(analytic)
    if len(analytic) != len(arrays):
        return _fail(
            raise_exception,
            f"gradcheck: got {len(analytic)} gradients for {len(arrays)} inputs",
        )

    chosen = []
    for array, gradient in zip(arrays, analytic):
        if gradient is None:
            chosen.append([])
        elif max_elements is not None and array.size > max_elements:
            chosen.append(np.sort(rng.choice(array.size, size=max_elements, replace=False)))
        else:
            chosen.append(np.arange(array.size))
    numeric = numerical_gradient(evaluate, arrays, grad_output, eps, indices=chosen)

    for index, (array, gradient, expected, elements) in enumerate(zip(arrays, analytic, numeric, chosen)):
        if gradient is None:
            continue
        gradient = _to_numpy(gradient)
        if gradient.shape != array.shape:
            return _fail(
                raise_exception,
                f"gradcheck: the gradient of input {index} has shape {gradient.shape}, "
                f"the input has shape {array.shape}",
            )
        got = gradient.reshape(-1)[elements].astype(np.float64)
        want = expected.reshape(-1)[elements]
        abs_error = np.abs(got - want)
        rel_error = abs_error / np.maximum(np.abs(want), np.finfo(np.float64).tiny)
        bad = ~(abs_error <= atol + rtol * np.abs(want))  # NaN counts as bad
        if bad.any():
            excess = np.where(np.isnan(abs_error), np.inf, abs_error - (atol + rtol * np.abs(want)))
            worst = int(np.argmax(excess))
            element = np.unravel_index(elements[worst], array.shape)
            element = tuple(int(e) for e in element)
            return _fail(
                raise_exception,
                f"gradcheck: the gradient of input {index} (shape {array.shape}) disagrees "
                f"with finite differences at {int(bad.sum())} of {len(elements)} checked "
                f"elements; worst at element {element}: analytic {got[worst]!r}, "
                f"numeric {want[worst]!r}; max abs error {np.nanmax(abs_error):.3e}, "
                f"max rel error {np.nanmax(rel_error):.3e} (atol={atol}, rtol={rtol}, eps={eps})",
            )
    return True


def _fail(raise_exception, message):
    if raise_exception:
        raise GradcheckError(message)
    return False


def assert_close(actual, expected, *, rtol, atol=0.0, name="result"):
    """Assert |actual - expected| <= atol + rtol * max|expected| everywhere (same shape).

    The tolerance is relative to the largest magnitude of `expected`, the natural scale for
    sums of products such as convolutions, where single outputs can cancel to near zero.
    NaNs must appear in the same places in both arrays.
    """
    actual = _to_numpy(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {actual.shape}, expected {expected.shape}")
    actual = actual.astype(np.float64)
    expected = expected.astype(np.float64)
    nan_actual, nan_expected = np.isnan(actual), np.isnan(expected)
    if (nan_actual != nan_expected).any():
        where = tuple(int(i) for i in np.argwhere(nan_actual != nan_expected)[0])
        raise AssertionError(
            f"{name}: NaN mismatch at {where}: got {actual[where]!r}, expected {expected[where]!r}"
        )
    infinite = np.isinf(expected)
    if (actual[infinite] != expected[infinite]).any():
        where = tuple(int(i) for i in np.argwhere(infinite & (actual != expected))[0])
        raise AssertionError(f"{name}: got {actual[where]!r} at {where}, expected {expected[where]!r}")
    finite = np.isfinite(expected)
    if not finite.any():
        return
    scale = np.max(np.abs(expected[finite]))
    tolerance = atol + rtol * scale
    error = np.zeros(expected.shape)
    error[finite] = np.abs(actual[finite] - expected[finite])
    error[finite & ~np.isfinite(actual)] = np.inf
    if (error > tolerance).any():
        where = tuple(int(i) for i in np.unravel_index(np.argmax(error), error.shape))
        raise AssertionError(
            f"{name}: max abs error {error[where]:.3e} at {where} "
            f"(got {actual[where]!r}, expected {expected[where]!r}) exceeds "
            f"atol + rtol * max|expected| = {tolerance:.3e}"
        )
