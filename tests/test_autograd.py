"""The autograd core: Tensor, backward(), gradient accumulation, graph freeing, no_grad and
GradientTape, each checked against gradients worked out by hand or by finite differences."""

import numpy as np
import pytest

import convlab
from convlab import ops
from convlab.autograd import GradientTape, Tensor, no_grad
from convlab.testing import gradcheck


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def fresh(fn):
    """fn with its output copied out of its inputs' memory (see test_ops_gradcheck.fresh)."""
    return lambda *args: fn(*args) * 1.0


# --------------------------------------------------------------------------- Tensor basics

def test_tensor_reports_shape_dtype_device_and_converts_back_to_numpy():
    array = randn(2, 3)
    t = Tensor(array)
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6
    assert t.dtype == np.float64 and t.device == "cpu"
    np.testing.assert_array_equal(t.numpy(), array)
    assert t.to("cpu") is t
    assert np.asarray(t).shape == (2, 3)


def test_python_numbers_become_float32_and_keep_float32_tensors_float32():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    x = Tensor(np.ones(3, dtype=np.float32))
    assert (x * 2.0 + 1).dtype == np.float32
    assert (2.0 / x).dtype == np.float32


def test_moving_to_cuda_without_a_gpu_says_what_is_missing():
    if convlab.cuda_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(RuntimeError, match="cuda|CUDA|CuPy|cupy"):
        Tensor(np.ones(2)).to("cuda")


def test_an_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device"):
        Tensor(np.ones(2)).to("tpu")


def test_numpy_array_on_the_left_of_an_operator_gives_a_tensor():
    x = Tensor(np.ones(2), requires_grad=True)
    y = np.array([1.0, 2.0]) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0])


# --------------------------------------------------------------------------- backward

def test_backward_of_a_scalar_gives_the_hand_derived_gradient():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = (x**3 - 2 * x).sum()  # dy/dx = 3x^2 - 2
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * x.numpy() ** 2 - 2)


def test_gradients_add_up_over_every_use_of_a_tensor():
    x = Tensor(np.array([2.0, 3.0]), requires_grad=True)
    y = (x * x + x + x / x).sum()  # uses x five times: d/dx = 2x + 1 + 0
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 1)


def test_repeated_backward_accumulates_into_grad_when_the_graph_is_kept():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (2 * x.numpy()))


def test_backward_twice_through_a_freed_graph_raises_a_clear_error():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_backward_with_an_explicit_upstream_gradient_as_array_or_tensor():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    g = np.array([1.0, 10.0, 100.0])
    (x * x).backward(g)
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() * g)
    x.zero_grad()
    (x * 3.0).backward(Tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), 3 * g)


def test_backward_of_a_non_scalar_without_a_gradient_is_refused():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2.0).backward()


def test_backward_with_a_gradient_of_the_wrong_shape_is_refused():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        (x * 2.0).backward(np.ones(2))


def test_backward_on_a_tensor_that_tracks_nothing_is_refused():
    with pytest.raises(RuntimeError, match="requires_grad"):
        Tensor(np.ones(()), requires_grad=False).backward()


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating"):
        Tensor(np.arange(3), requires_grad=True)


def test_no_grad_records_nothing_as_context_and_as_decorator():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.tracked

    @no_grad()
    def double(t):
        return t * 2.0

    assert not double(x).tracked
    assert (x * 2.0).tracked


# --------------------------------------------------------------------------- every arithmetic op

BINARY = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / (b * b + 1.0),
    "maximum": ops.maximum,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (3, 4)), ((3, 1), (4,)), ((2, 3, 4), (1, 4))])
def test_broadcasting_binary_op_gradients_match_finite_differences(name, shape_a, shape_b):
    assert gradcheck(BINARY[name], [randn(*shape_a), randn(*shape_b, seed=1)])


UNARY = {
    "negative": lambda a: -a,
    "power": lambda a: a**3,
    "exp": lambda a: a.exp(),
    "log": lambda a: (a * a + 1.0).log(),
    "sqrt": lambda a: (a * a + 1.0).sqrt(),
    "abs": lambda a: a.abs(),
    "sum_all": lambda a: a.sum(),
    "sum_axis": lambda a: a.sum(axis=1),
    "sum_keepdims": lambda a: a.sum(axis=(0, 2), keepdims=True),
    "mean_axis": lambda a: a.mean(axis=-1),
    "max_axis": lambda a: a.max(axis=1),
    "max_all": lambda a: a.max(),
    "reshape": fresh(lambda a: a.reshape(4, 6)),
    "transpose": fresh(lambda a: a.transpose(2, 0, 1)),
    "slice": fresh(lambda a: a[1:, ::2, -1]),
    "fancy_index_with_repeats": lambda a: a[[0, 1, 0], 1:],
    "concatenate": lambda a: ops.concatenate([a, a * 2.0, a[:, :1]], axis=1),
    "stack": lambda a: ops.stack([a, a * 3.0], axis=1),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_and_shape_op_gradients_match_finite_differences(name):
    assert gradcheck(UNARY[name], [randn(2, 3, 4)])


def test_matmul_gradients_match_finite_differences():
    assert gradcheck(lambda a, b: a @ b, [randn(3, 4), randn(4, 2, seed=1)])


def test_adding_tensors_of_incompatible_shapes_names_both_shapes():
    with pytest.raises(ValueError, match=r"add: incompatible shapes \(2, 3\) and \(4,\)"):
        Tensor(np.ones((2, 3))) + Tensor(np.ones(4))


def test_matmul_of_mismatched_shapes_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))


def test_reshape_to_an_impossible_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, -1\)"):
        Tensor(np.ones((2, 3))).reshape(4, -1)


# --------------------------------------------------------------------------- GradientTape

def test_tape_gradient_of_a_watched_input_that_is_not_a_weight():
    image = Tensor(randn(1, 4, 4, 2))
    kernel = Tensor(randn(3, 3, 2, 1, seed=1))
    with GradientTape() as tape:
        tape.watch(image)
        loss = ops.conv2d(image, kernel, padding="same").mean()
    grad = tape.gradient(loss, image)
    # The same gradient through backward() on a requires_grad copy:
    leaf = Tensor(image.numpy(), requires_grad=True)
    ops.conv2d(leaf, kernel, padding="same").mean().backward()
    np.testing.assert_allclose(grad.numpy(), leaf.grad.numpy())
    assert image.grad is None  # the tape is functional: nothing written to .grad


def test_tape_gradient_for_a_list_of_sources_and_none_for_unconnected_ones():
    a, b, unused = (Tensor(np.array([1.0, 2.0]), requires_grad=True) for _ in range(3))
    with GradientTape() as tape:
        loss = (a * b * b).sum()
    grads = tape.gradient(loss, [a, b, unused])
    np.testing.assert_allclose(grads[0].numpy(), b.numpy() ** 2)
    np.testing.assert_allclose(grads[1].numpy(), 2 * a.numpy() * b.numpy())
    assert grads[2] is None


def test_tape_gradient_with_respect_to_an_intermediate_activation_as_in_grad_cam():
    x = Tensor(randn(2, 3), requires_grad=True)
    w = Tensor(randn(3, 4, seed=1), requires_grad=True)
    with GradientTape() as tape:
        activation = ops.relu(x @ w)
        tape.watch(activation)
        score = (activation * activation).sum()
    grad = tape.gradient(score, activation)
    np.testing.assert_allclose(grad.numpy(), 2 * activation.numpy())


def test_non_persistent_tape_answers_once_and_persistent_tape_answers_again():
    x = Tensor(np.array([3.0]))
    with GradientTape() as tape:
        tape.watch(x)
        y = x * x
    assert tape.gradient(y, x).item() == 6.0
    with pytest.raises(RuntimeError, match="persistent"):
        tape.gradient(y, x)

    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * x
    assert tape.gradient(y, x).item() == 6.0
    assert tape.gradient(z, x).item() == 27.0


def test_watching_stops_when_the_tape_closes():
    x = Tensor(np.array([1.0]))
    with GradientTape() as tape:
        tape.watch(x)
    assert not (x * 2.0).tracked


def test_tape_watch_refuses_arrays_and_calls_outside_the_block():
    tape = GradientTape()
    with pytest.raises(RuntimeError, match="with"):
        tape.watch(Tensor(np.ones(2)))
    with GradientTape() as tape, pytest.raises(TypeError, match="Tensor"):
        tape.watch(np.ones(2))


def test_tape_gradient_on_layer_weights_matches_the_hand_derived_dense_gradient():
    convlab.utils.set_seed(0)
    layer = convlab.layers.Dense(2, dtype="float64")
    x = randn(5, 3)
    with GradientTape() as tape:
        loss = layer(x).sum()
    grad_kernel, grad_bias = tape.gradient(loss, layer.trainable_weights)
    np.testing.assert_allclose(grad_kernel.numpy(), x.T @ np.ones((5, 2)))
    np.testing.assert_allclose(grad_bias.numpy(), np.full(2, 5.0))


def test_tape_gradient_with_output_gradients_weights_the_target():
    x = Tensor(np.array([1.0, 2.0]))
    with GradientTape() as tape:
        tape.watch(x)
        y = x * x
    grad = tape.gradient(y, x, output_gradients=np.array([1.0, -1.0]))
    np.testing.assert_allclose(grad.numpy(), [2.0, -4.0])


@pytest.mark.cuda
def test_ops_and_backward_on_cuda_tensors_match_the_cpu():
    pytest.importorskip("cupy")
    a, b = randn(3, 4), randn(4, 2, seed=1)
    results = {}
    for device in ("cpu", "cuda"):
        x = Tensor(a, requires_grad=True)
        y = (ops.softmax(x.to(device) @ Tensor(b).to(device)) * 2.0).sum(axis=0).max()
        y.backward()
        results[device] = (y.item(), x.grad.numpy())
    assert results["cuda"][0] == pytest.approx(results["cpu"][0])
    np.testing.assert_allclose(results["cuda"][1], results["cpu"][1], rtol=1e-10)


def test_a_tensor_feeding_two_paths_gets_the_gradient_of_both():
    """z feeds y directly and through z.sum(): d sum(y) / dx = 2 * (1 + 3) for x of width 3.

    The graph walk once appended z.sum() before z (z was marked visited when pushed), so
    the gradient through the sum was lost and x.grad was 2 instead of 8."""
    x = Tensor(np.random.default_rng(0).random((2, 3)), requires_grad=True)
    z = x * 2.0
    y = z + z.sum(axis=1, keepdims=True)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy() if hasattr(x.grad, "numpy") else x.grad,
                                  np.full((2, 3), 8.0))

    def f(a):
        z = Tensor(a) * 2.0
        return (z * z.mean(axis=1, keepdims=True)).numpy()

    base = np.random.default_rng(1).random((2, 3))
    t = Tensor(base.copy(), requires_grad=True)
    z = t * 2.0
    out = z * z.mean(axis=1, keepdims=True)
    upstream = np.random.default_rng(2).random((2, 3))
    (out * Tensor(upstream)).sum().backward()
    numeric = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        step = np.zeros_like(base)
        step[i] = 1e-6
        numeric[i] = ((f(base + step) - f(base - step)) * upstream).sum() / 2e-6
    got = t.grad.numpy() if hasattr(t.grad, "numpy") else t.grad
    np.testing.assert_allclose(got, numeric, rtol=1e-6)
