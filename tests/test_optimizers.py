"""Optimizers against torch.optim on the same gradients; schedules against their formulas."""

import math

import numpy as np
import pytest

from convlab import optimizers
from convlab.autograd import Variable

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("single_threaded_torch")


def run_both(ours, make_theirs, rng, steps=6, shape=(3, 4)):
    """Apply the same gradient sequence to a convlab Variable and a torch parameter."""
    start = rng.standard_normal(shape)
    variable = Variable(start.copy(), dtype="float64")
    parameter = torch.nn.Parameter(torch.tensor(start.copy()))
    theirs = make_theirs([parameter])
    for _ in range(steps):
        g = rng.standard_normal(shape)
        ours.apply_gradients([(g, variable)])
        parameter.grad = torch.tensor(g)
        theirs.step()
    return variable.numpy(), parameter.detach().numpy()


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_torch(rng, momentum, nesterov):
    ours, theirs = run_both(optimizers.SGD(0.05, momentum=momentum, nesterov=nesterov),
                            lambda p: torch.optim.SGD(p, lr=0.05, momentum=momentum, nesterov=nesterov), rng)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.5, False), (0.0, True), (0.5, True)])
def test_rmsprop_matches_torch_with_zero_epsilon(rng, momentum, centered):
    # Keras adds epsilon inside the square root, torch outside: with epsilon 0 they are the same rule.
    ours, theirs = run_both(optimizers.RMSprop(0.01, rho=0.9, momentum=momentum, epsilon=0.0, centered=centered),
                            lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=momentum, eps=0.0,
                                                          centered=centered), rng)
    np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_matches_torch_with_zero_epsilon(rng, amsgrad):
    ours, theirs = run_both(optimizers.Adam(0.01, epsilon=0.0, amsgrad=amsgrad),
                            lambda p: torch.optim.Adam(p, lr=0.01, eps=0.0, amsgrad=amsgrad), rng)
    np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-13)


def test_keras_defaults():
    assert optimizers.get("rmsprop").get_config()["learning_rate"] == 0.001
    assert optimizers.get("rmsprop").rho == 0.9 and optimizers.get("rmsprop").epsilon == 1e-7
    assert optimizers.get("adam").get_config()["learning_rate"] == 0.001
    assert (optimizers.get("adam").beta_1, optimizers.get("adam").beta_2) == (0.9, 0.999)
    assert optimizers.get("sgd").get_config()["learning_rate"] == 0.01
    assert optimizers.get("sgd").momentum == 0.0


def test_rmsprop_first_step_puts_epsilon_inside_the_root_like_keras():
    # First step from zero state: s = (1 - rho) g^2, w -= lr g / sqrt(s + eps).
    g = np.array([1e-3, 2.0])
    variable = Variable(np.zeros(2), dtype="float64")
    optimizers.RMSprop(0.1, epsilon=1e-4).apply_gradients([(g, variable)])
    np.testing.assert_allclose(variable.numpy(), -0.1 * g / np.sqrt(0.1 * g * g + 1e-4), rtol=1e-14)


def test_schedules_follow_their_formulas():
    exponential = optimizers.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert exponential(0) == 0.1 and exponential(20) == pytest.approx(0.025) and exponential(5) == pytest.approx(
        0.1 * 0.5 ** 0.5)
    stair = optimizers.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [stair(s) for s in (0, 9, 10, 19, 20)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    step = optimizers.StepDecay(1.0, step_size=3, factor=0.1)
    assert [step(s) for s in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01])
    piecewise = optimizers.PiecewiseConstantDecay([5, 10], [1.0, 0.5, 0.1])
    assert [piecewise(s) for s in (0, 5, 6, 10, 11)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    inverse = optimizers.InverseTimeDecay(1.0, decay_steps=2, decay_rate=0.5)
    assert inverse(4) == pytest.approx(1 / (1 + 0.5 * 2))
    cosine = optimizers.CosineDecay(1.0, decay_steps=10)
    assert cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0) and cosine(20) == pytest.approx(0)


def test_a_schedule_is_evaluated_at_the_number_of_updates_done():
    # SGD without momentum: w_k = w_{k-1} - lr(k - 1) * g with g = 1
    schedule = optimizers.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)
    optimizer = optimizers.SGD(schedule)
    variable = Variable(np.zeros(1), dtype="float64")
    for _ in range(4):
        optimizer.apply_gradients([(np.ones(1), variable)])
    assert variable.numpy()[0] == pytest.approx(-(1 + 0.5 + 0.25 + 0.125))
    assert optimizer.iterations == 4 and optimizer.learning_rate == pytest.approx(0.0625)


def test_clipnorm_and_clipvalue(rng):
    g = np.array([3.0, 4.0])
    for kwargs, expected in (({"clipnorm": 1.0}, g / 5), ({"clipvalue": 3.5}, np.array([3.0, 3.5])),
                             ({"global_clipnorm": 2.5}, g / 2)):
        variable = Variable(np.zeros(2), dtype="float64")
        optimizers.SGD(1.0, **kwargs).apply_gradients([(g, variable)])
        np.testing.assert_allclose(variable.numpy(), -expected)


def test_state_round_trip_continues_the_same_trajectory(rng):
    gradients = [rng.standard_normal(5) for _ in range(6)]
    straight = Variable(np.ones(5), dtype="float64")
    optimizer = optimizers.Adam(0.1)
    for g in gradients:
        optimizer.apply_gradients([(g, straight)])
    resumed = Variable(np.ones(5), dtype="float64")
    first = optimizers.Adam(0.1)
    for g in gradients[:3]:
        first.apply_gradients([(g, resumed)])
    second = optimizers.Adam.from_config(first.get_config())
    second.set_state([resumed], first.get_state([resumed]))
    for g in gradients[3:]:
        second.apply_gradients([(g, resumed)])
    np.testing.assert_array_equal(resumed.numpy(), straight.numpy())


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        optimizers.get("adamw")
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        optimizers.SGD(-1)
    with pytest.raises(ValueError, match="momentum must be in"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="one more element"):
        optimizers.PiecewiseConstantDecay([1, 2], [1.0])
    assert math.isfinite(optimizers.Adam().learning_rate)
