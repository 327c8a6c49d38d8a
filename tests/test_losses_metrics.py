"""Losses against PyTorch and finite differences; metrics against direct counts."""

import numpy as np
import pytest

from convlab import losses, metrics
from convlab.autograd import Tensor
from convlab.testing import gradcheck

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.usefixtures("single_threaded_torch")


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def value_and_grad(loss, y_true, y_pred):
    x = Tensor(y_pred, requires_grad=True)
    out = loss(y_true, x)
    out.backward()
    return float(out.item()), x.grad.numpy()


def torch_value_and_grad(fn, y_pred):
    t = torch.tensor(y_pred, requires_grad=True)
    out = fn(t)
    out.backward()
    return out.item(), t.grad.numpy()


@pytest.mark.parametrize("shape", [(8, 5), (2, 6, 7, 3)])
def test_sparse_crossentropy_from_logits_matches_torch_cross_entropy(rng, shape):
    z = rng.standard_normal(shape) * 3
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    ours = value_and_grad(losses.SparseCategoricalCrossentropy(from_logits=True), labels, z)
    theirs = torch_value_and_grad(
        lambda t: F.cross_entropy(t.movedim(-1, 1), torch.tensor(labels)), z)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-14)


@pytest.mark.parametrize("shape", [(8, 5), (2, 6, 7, 3)])
def test_sparse_crossentropy_from_probabilities_matches_torch_log_of_normalized_probabilities(rng, shape):
    p = softmax(rng.standard_normal(shape)) * rng.uniform(0.5, 2.0, size=shape[:-1] + (1,))  # unnormalized
    labels = rng.integers(0, shape[-1], size=shape[:-1])

    def reference(t):
        q = t / t.sum(dim=-1, keepdim=True)
        picked = torch.gather(q, -1, torch.tensor(labels)[..., None])
        return -torch.log(picked.clamp(1e-7, 1 - 1e-7)).mean()

    ours = value_and_grad(losses.SparseCategoricalCrossentropy(), labels[..., None], p)  # (n, 1) labels, as Keras
    theirs = torch_value_and_grad(reference, p)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-9, atol=1e-12)


def test_crossentropy_of_a_zero_probability_is_clipped_like_keras():
    # Keras clips to [1e-7, 1 - 1e-7]: a certain wrong answer costs -log(1e-7) = 16.118..., not inf,
    # and the clipped row passes no gradient.
    p = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]])
    value, gradient = value_and_grad(losses.SparseCategoricalCrossentropy(), np.array([1, 1]), p)
    np.testing.assert_allclose(value, (-np.log(1e-7) - np.log(0.5)) / 2, rtol=1e-12)
    assert np.all(gradient[0] == 0)
    assert np.all(gradient[1] != 0)


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy_matches_torch(rng, from_logits):
    z = rng.standard_normal((6, 4))
    target = softmax(rng.standard_normal((6, 4)) * 2)  # soft targets
    if from_logits:
        ours = value_and_grad(losses.CategoricalCrossentropy(from_logits=True), target, z)
        theirs = torch_value_and_grad(lambda t: F.cross_entropy(t, torch.tensor(target)), z)
    else:
        p = softmax(z)
        ours = value_and_grad(losses.CategoricalCrossentropy(), target, p)
        theirs = torch_value_and_grad(
            lambda t: -(torch.tensor(target) * torch.log((t / t.sum(-1, keepdim=True)).clamp(1e-7, 1 - 1e-7))
                        ).sum(-1).mean(), p)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-9, atol=1e-13)


def test_categorical_label_smoothing_is_keras_formula(rng):
    z = rng.standard_normal((5, 4))
    target = np.eye(4)[rng.integers(0, 4, 5)]
    smoothed = target * 0.9 + 0.1 / 4
    a = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(target, Tensor(z)).item()
    b = F.cross_entropy(torch.tensor(z), torch.tensor(smoothed)).item()
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_binary_crossentropy_from_logits_matches_torch_and_survives_huge_logits(rng):
    z = rng.standard_normal((7, 1)) * 4
    z[0, 0], z[1, 0] = 800.0, -800.0
    target = rng.integers(0, 2, (7, 1)).astype(np.float64)
    ours = value_and_grad(losses.BinaryCrossentropy(from_logits=True), target[:, 0], z)  # (n,) labels, (n, 1) output
    theirs = torch_value_and_grad(lambda t: F.binary_cross_entropy_with_logits(t, torch.tensor(target)), z)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-15)


def test_binary_crossentropy_from_probabilities_is_keras_formula(rng):
    p = rng.uniform(0.01, 0.99, (9, 1))
    target = rng.integers(0, 2, (9, 1)).astype(np.float64)
    eps = 1e-7

    def reference(t):
        tt = torch.tensor(target)
        return -(tt * torch.log(t + eps) + (1 - tt) * torch.log(1 - t + eps)).mean()

    ours = value_and_grad(losses.BinaryCrossentropy(), target, p)
    theirs = torch_value_and_grad(reference, p)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10)
    # and against torch's own BCE (which clamps the log at -100 instead): equal away from 0 and 1
    np.testing.assert_allclose(ours[0], F.binary_cross_entropy(torch.tensor(p), torch.tensor(target)).item(),
                               rtol=1e-5)


def test_mean_squared_error_matches_torch(rng):
    y = rng.standard_normal((4, 3, 2))
    target = rng.standard_normal((4, 3, 2))
    ours = value_and_grad(losses.MeanSquaredError(), target, y)
    theirs = torch_value_and_grad(lambda t: F.mse_loss(t, torch.tensor(target)), y)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)


@pytest.mark.parametrize("name, make_target, from_logits", [
    ("sparse_categorical_crossentropy", lambda rng: rng.integers(0, 4, (3, 5)), False),
    ("sparse_categorical_crossentropy", lambda rng: rng.integers(0, 4, (3, 5)), True),
    ("categorical_crossentropy", lambda rng: softmax(rng.standard_normal((3, 5, 4))), False),
    ("categorical_crossentropy", lambda rng: softmax(rng.standard_normal((3, 5, 4))), True),
    ("binary_crossentropy", lambda rng: rng.uniform(0, 1, (3, 5, 4)), False),
    ("binary_crossentropy", lambda rng: rng.uniform(0, 1, (3, 5, 4)), True),
])
def test_loss_gradients_match_finite_differences(rng, name, make_target, from_logits):
    target = make_target(rng)
    loss = losses.get(name)
    loss.from_logits = from_logits
    if from_logits:
        y = rng.standard_normal((3, 5, 4))
    elif name == "binary_crossentropy":
        y = rng.uniform(0.05, 0.95, (3, 5, 4))
    else:
        y = softmax(rng.standard_normal((3, 5, 4)))
    gradcheck(lambda t: loss(target, t), [y])


def test_unknown_names_and_bad_labels_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown loss 'cross_entropy'"):
        losses.get("cross_entropy")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 3]), Tensor(np.full((2, 3), 1 / 3)))
    with pytest.raises(ValueError, match="y_true has shape"):
        losses.SparseCategoricalCrossentropy()(np.zeros((2, 2), int), Tensor(np.full((2, 3), 1 / 3)))


# --------------------------------------------------------------------------- metrics


def test_accuracies_count_matches_over_batches(rng):
    p = softmax(rng.standard_normal((50, 4)))
    labels = rng.integers(0, 4, 50)
    sparse = metrics.SparseCategoricalAccuracy()
    for start in range(0, 50, 16):  # uneven batches: the result is total correct / total seen
        sparse.update_state(labels[start:start + 16], p[start:start + 16])
    assert sparse.result() == pytest.approx(np.mean(p.argmax(1) == labels), abs=1e-15)
    categorical = metrics.CategoricalAccuracy()
    categorical.update_state(np.eye(4)[labels], p)
    assert categorical.result() == sparse.result()
    binary = metrics.BinaryAccuracy()
    binary.update_state((labels > 1).astype(float), p[:, :1] * 0 + (p[:, 0:1] > 0.25))
    assert binary.result() == pytest.approx(np.mean((labels > 1) == (p[:, 0] > 0.25)))


def test_accuracy_name_resolves_from_the_loss_like_keras():
    assert type(metrics.get("accuracy", loss=losses.get("binary_crossentropy"))) is metrics.BinaryAccuracy
    assert type(metrics.get("accuracy", loss=losses.get("categorical_crossentropy"))) is metrics.CategoricalAccuracy
    assert type(metrics.get("accuracy", loss=losses.get("sparse_categorical_crossentropy"))) is \
        metrics.SparseCategoricalAccuracy
    assert metrics.get("accuracy", loss=losses.get("binary_crossentropy")).name == "accuracy"


def test_mean_iou_equals_per_class_intersection_over_union_from_sets(rng):
    truth = rng.integers(0, 3, (4, 9, 9))
    scores = rng.standard_normal((4, 9, 9, 3)) + 2.0 * np.eye(3)[truth]  # mostly right
    metric = metrics.MeanIoU(num_classes=3, sparse_y_pred=False)
    metric.update_state(truth[:2], scores[:2])
    metric.update_state(truth[2:], scores[2:])
    predicted = scores.argmax(-1)
    ious = []
    for c in range(3):
        truth_set = set(zip(*np.nonzero(truth == c)))
        predicted_set = set(zip(*np.nonzero(predicted == c)))
        ious.append(len(truth_set & predicted_set) / len(truth_set | predicted_set))
    assert metric.result() == pytest.approx(np.mean(ious), abs=1e-12)


def test_mean_iou_leaves_out_classes_absent_from_targets_and_predictions():
    metric = metrics.MeanIoU(num_classes=4)
    metric.update_state(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    # class 0: 1 / 2, class 1: 2 / 3; classes 2 and 3 never occur
    assert metric.result() == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("loss_name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_softmax_outputs_train_through_their_logits_even_when_saturated(rng, loss_name):
    # Scores so large that softmax gives exactly 1 for a wrong class: the clipped-probability
    # gradient would be 0 (a dead unit); through the logits it is softmax - onehot, as torch computes.
    from convlab import ops

    z = rng.standard_normal((4, 3)) * 100
    labels = (z.argmax(1) + 1) % 3
    target = labels if loss_name.startswith("sparse") else np.eye(3)[labels]
    ours = value_and_grad(lambda t, x: losses.get(loss_name)(t, ops.softmax(x)), target, z)
    theirs = torch_value_and_grad(lambda t: F.cross_entropy(t, torch.tensor(labels)), z)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-15)
    assert np.abs(ours[1]).max() > 0.1


def test_sigmoid_outputs_train_through_their_logits(rng):
    from convlab import ops

    z = np.array([[40.0], [-40.0], [0.3]])
    target = np.array([[0.0], [1.0], [1.0]])
    ours = value_and_grad(lambda t, x: losses.BinaryCrossentropy()(t, ops.sigmoid(x)), target, z)
    theirs = torch_value_and_grad(lambda t: F.binary_cross_entropy_with_logits(t, torch.tensor(target)), z)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-15)
