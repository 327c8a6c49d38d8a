"""Data augmentation layers: inference is the identity; in training, flips against np.flip,
quarter turns against np.rot90, whole-pixel shifts against np.roll / np.pad, zooms against
hand-built crops and interpolation matrices, and any angle, shift or zoom against
scipy.ndimage; seeds, configs, models, and the errors bad arguments get."""

import json
import math

import numpy as np
import pytest

import convlab
from convlab import layers, utils
from convlab.autograd import Tensor
from convlab.models import Model, Sequential

SCIPY_MODES = {"reflect": "reflect", "wrap": "grid-wrap", "nearest": "nearest", "constant": "grid-constant"}
FILL_MODES = list(SCIPY_MODES)


def images(rng, shape=(4, 8, 8, 3), dtype="float32"):
    return rng.random(shape).astype(dtype)


def scipy_ndimage():
    return pytest.importorskip("scipy.ndimage", reason="scipy is the oracle for arbitrary angles, shifts and zooms")


def per_channel(function, image):
    """Apply a 2-D scipy function to each channel of an (height, width, channels) image."""
    return np.stack([function(image[:, :, k]) for k in range(image.shape[-1])], axis=-1)


EVERY_LAYER = [
    lambda **kw: layers.RandomFlip(**kw),
    lambda **kw: layers.RandomRotation(0.2, **kw),
    lambda **kw: layers.RandomZoom(0.3, **kw),
    lambda **kw: layers.RandomTranslation(0.2, 0.3, **kw),
]
LAYER_IDS = ["flip", "rotation", "zoom", "translation"]


# --------------------------------------------------------------------------- training switch


@pytest.mark.parametrize("make", EVERY_LAYER, ids=LAYER_IDS)
def test_inference_returns_the_input_unchanged(make, rng):
    layer = make(seed=1)
    x = Tensor(images(rng))
    assert layer(x) is x
    assert layer(x, training=False) is x
    array = images(rng)
    np.testing.assert_array_equal(layer(array, training=False).numpy(), array)


@pytest.mark.parametrize("make", EVERY_LAYER, ids=LAYER_IDS)
def test_training_changes_the_images_and_keeps_shape_and_dtype(make, rng):
    layer = make(seed=2)
    x = images(rng)
    out = layer(x, training=True)
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.array_equal(out.numpy(), x)
    assert not out.requires_grad and out.is_leaf  # augmentation records no gradient


# --------------------------------------------------------------------------- RandomFlip


@pytest.mark.parametrize("mode, axis", [("horizontal", 2), ("vertical", 1)])
def test_flip_leaves_each_image_or_flips_it_along_its_axis(mode, axis, rng):
    x = images(rng, (48, 5, 6, 2))
    out = layers.RandomFlip(mode, seed=3)(x, training=True).numpy()
    flipped = np.flip(x, axis=axis)
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    turned = [np.array_equal(o, f) for o, f in zip(out, flipped)]
    assert all(k != t for k, t in zip(kept, turned))  # each image exactly one of the two
    assert any(kept) and any(turned)


def test_flip_both_ways_draws_the_two_flips_independently(rng):
    x = images(rng, (64, 4, 5, 1))
    out = layers.RandomFlip("horizontal_and_vertical", seed=4)(x, training=True).numpy()
    seen = set()
    for o, i in zip(out, x):
        matches = [(h, v) for h in (0, 1) for v in (0, 1)
                   if np.array_equal(o, np.flip(np.flip(i, 1) if h else i, 0) if v else (np.flip(i, 1) if h else i))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}


# --------------------------------------------------------------------------- RandomRotation


@pytest.mark.parametrize("size", [6, 7])
@pytest.mark.parametrize("factor, quarter_turns", [(0.25, 1), (-0.25, -1), (0.5, 2)])
def test_rotation_by_quarter_turns_matches_rot90(size, factor, quarter_turns, rng):
    x = images(rng, (3, size, size, 2))
    expected = np.rot90(x, k=quarter_turns, axes=(1, 2))
    nearest = layers.RandomRotation((factor, factor), interpolation="nearest", seed=0)
    np.testing.assert_array_equal(nearest(x, training=True).numpy(), expected)
    bilinear = layers.RandomRotation((factor, factor), seed=0)
    np.testing.assert_allclose(bilinear(x, training=True).numpy(), expected, rtol=0, atol=1e-6)


def test_positive_rotation_turns_the_picture_counter_clockwise():
    # A bright pixel in the top-right corner: a counter-clockwise quarter turn (as seen with
    # row 0 at the top) carries it to the top-left corner, a clockwise one to the bottom-right.
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 0, 4, 0] = 1.0
    counter = layers.RandomRotation((0.25, 0.25), seed=0)(x, training=True).numpy()[0, :, :, 0]
    clockwise = layers.RandomRotation((-0.25, -0.25), seed=0)(x, training=True).numpy()[0, :, :, 0]
    assert np.unravel_index(np.argmax(counter), counter.shape) == (0, 0)
    assert np.unravel_index(np.argmax(clockwise), clockwise.shape) == (4, 4)


def rotated_by_scipy(image, angle, order, fill_mode, fill_value):
    """Rotate one (height, width, channels) image with scipy: output (row, col) reads the
    input at the centre plus the offset turned by `angle` (a turn towards -row is positive)."""
    ndimage = scipy_ndimage()
    height, width = image.shape[:2]
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = np.array([[cos, sin], [-sin, cos]])  # (row, col) -> (row_in, col_in)
    offset = centre - matrix @ centre
    return per_channel(lambda plane: ndimage.affine_transform(
        plane, matrix, offset, order=order, mode=SCIPY_MODES[fill_mode], cval=fill_value), image)


@pytest.mark.parametrize("interpolation, order", [("bilinear", 1), ("nearest", 0)])
@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_rotation_by_random_angles_matches_scipy(interpolation, order, fill_mode, rng):
    x = images(rng, (3, 9, 7, 2), "float64")
    kw = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=-0.5, dtype="float64")
    layer = layers.RandomRotation(0.5, seed=11, **kw)
    angles = layers.RandomRotation(0.5, seed=11, **kw).get_random_transformation(x)["angle"]
    out = layer(x, training=True).numpy()
    for image, result, angle in zip(x, out, angles):
        expected = rotated_by_scipy(image, angle, order, fill_mode, -0.5)
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- RandomTranslation


SHIFTS = [(2, -3), (-1, 5), (8, -8)]  # (down, right) in pixels on 8 x 8 images


def shifted(x, down, right, fill_mode, fill_value):
    """x shifted by whole pixels, the vacated pixels taken from np.pad's extension."""
    if fill_mode == "wrap":
        return np.roll(x, (down, right), axis=(1, 2))
    height, width = x.shape[1:3]
    pad = 2 * max(height, width)
    widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    if fill_mode == "constant":
        padded = np.pad(x, widths, mode="constant", constant_values=fill_value)
    else:
        padded = np.pad(x, widths, mode={"reflect": "symmetric", "nearest": "edge"}[fill_mode])
    return padded[:, pad - down:pad - down + height, pad - right:pad - right + width]


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize("down, right", SHIFTS)
def test_translation_by_whole_pixels_matches_roll_and_pad(down, right, fill_mode, interpolation, rng):
    x = images(rng, (2, 8, 8, 3))
    layer = layers.RandomTranslation((down / 8, down / 8), (right / 8, right / 8), fill_mode=fill_mode,
                                     interpolation=interpolation, fill_value=-2.0, seed=0)
    np.testing.assert_array_equal(layer(x, training=True).numpy(), shifted(x, down, right, fill_mode, -2.0))


def test_translation_with_constant_fill_puts_the_fill_value_in_the_vacated_rows_and_columns(rng):
    x = images(rng, (2, 8, 8, 3))
    layer = layers.RandomTranslation((0.25, 0.25), (-0.375, -0.375), fill_mode="constant", fill_value=7.0)
    out = layer(x, training=True).numpy()
    np.testing.assert_array_equal(out[:, 2:, :5], x[:, :-2, 3:])  # moved 2 down, 3 left
    assert np.all(out[:, :2] == 7.0) and np.all(out[:, :, 5:] == 7.0)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_translation_by_random_fractions_of_a_pixel_matches_scipy_shift(fill_mode, rng):
    ndimage = scipy_ndimage()
    x = images(rng, (3, 7, 10, 2), "float64")
    kw = dict(fill_mode=fill_mode, fill_value=0.25, dtype="float64")
    layer = layers.RandomTranslation((-0.4, 0.3), 0.5, seed=5, **kw)
    drawn = layers.RandomTranslation((-0.4, 0.3), 0.5, seed=5, **kw).get_random_transformation(x)
    out = layer(x, training=True).numpy()
    for image, result, down, right in zip(x, out, drawn["height_shift"], drawn["width_shift"]):
        assert down != round(down) and right != round(right)
        expected = ndimage.shift(image, (down, right, 0), order=1, mode=SCIPY_MODES[fill_mode], cval=0.25)
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- RandomZoom


def test_zoom_in_twice_nearest_is_the_central_half_upsampled(rng):
    x = images(rng, (2, 8, 8, 3))
    out = layers.RandomZoom((-0.5, -0.5), interpolation="nearest")(x, training=True).numpy()
    expected = np.repeat(np.repeat(x[:, 2:6, 2:6], 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(out, expected)


def zoom_matrix(size, zoom):
    """The 1-D linear interpolation matrix of a zoom about the centre (all reads inside)."""
    centre = (size - 1) / 2
    matrix = np.zeros((size, size))
    for i in range(size):
        position = centre + zoom * (i - centre)
        left = math.floor(position)
        matrix[i, left] += 1 - (position - left)
        if position > left:
            matrix[i, left + 1] += position - left
    return matrix


def test_zoom_in_bilinear_is_separable_linear_interpolation(rng):
    x = images(rng, (2, 8, 6, 2), "float64")
    out = layers.RandomZoom((-0.5, -0.5), (-0.25, -0.25), dtype="float64")(x, training=True).numpy()
    rows, cols = zoom_matrix(8, 0.5), zoom_matrix(6, 0.75)
    expected = np.einsum("ij,njkc,lk->nilc", rows, x, cols)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_zoom_out_with_constant_fill_shrinks_the_picture_inside_a_border_of_fill_value(rng):
    x = images(rng, (2, 8, 8, 3))
    out = layers.RandomZoom((1.0, 1.0), fill_mode="constant", fill_value=-1.0, interpolation="nearest")(
        x, training=True).numpy()
    expected = np.full_like(x, -1.0)
    expected[:, 2:6, 2:6] = x[:, 1::2, 1::2]  # every other pixel, at half the size
    np.testing.assert_array_equal(out, expected)


def test_zoom_height_factor_acts_on_rows_and_width_factor_on_columns(rng):
    x = images(rng, (2, 8, 8, 1))
    layer = layers.RandomZoom((1.0, 1.0), (-0.5, -0.5), fill_mode="constant", fill_value=3.0,
                              interpolation="nearest")
    expected = np.full_like(x, 3.0)
    expected[:, 2:6] = np.repeat(x[:, 1::2, 2:6], 2, axis=2)  # rows zoomed out, columns zoomed in
    np.testing.assert_array_equal(layer(x, training=True).numpy(), expected)


def test_zoom_without_width_factor_keeps_the_aspect_ratio(rng):
    x = images(rng, (6, 9, 9, 2))
    drawn = layers.RandomZoom(0.4, seed=8).get_random_transformation(x)
    np.testing.assert_array_equal(drawn["width_zoom"], drawn["height_zoom"])
    assert np.all((drawn["height_zoom"] >= 0.6) & (drawn["height_zoom"] <= 1.4))
    # With fixed zooms, leaving the width to follow the height is giving it the same zoom.
    same = layers.RandomZoom((0.3, 0.3))(x, training=True).numpy()
    both = layers.RandomZoom((0.3, 0.3), (0.3, 0.3))(x, training=True).numpy()
    np.testing.assert_array_equal(same, both)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_zoom_by_random_amounts_matches_scipy(fill_mode, rng):
    ndimage = scipy_ndimage()
    x = images(rng, (3, 9, 8, 2), "float64")
    kw = dict(fill_mode=fill_mode, fill_value=0.5, dtype="float64")
    layer = layers.RandomZoom(0.5, (-0.3, 0.6), seed=9, **kw)
    drawn = layers.RandomZoom(0.5, (-0.3, 0.6), seed=9, **kw).get_random_transformation(x)
    out = layer(x, training=True).numpy()
    centre = np.array([4.0, 3.5])
    for image, result, zy, zx in zip(x, out, drawn["height_zoom"], drawn["width_zoom"]):
        matrix = np.diag([zy, zx])
        expected = per_channel(lambda plane: ndimage.affine_transform(
            plane, matrix, centre - matrix @ centre, order=1, mode=SCIPY_MODES[fill_mode], cval=0.5), image)
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- ranges of the draws


def test_draws_cover_the_factor_ranges_and_nothing_more(rng):
    x = images(rng, (400, 4, 10, 1))
    angle = layers.RandomRotation(0.1, seed=1).get_random_transformation(x)["angle"]
    assert angle.min() >= -0.2 * math.pi and angle.max() <= 0.2 * math.pi
    assert angle.min() < -0.15 * math.pi and angle.max() > 0.15 * math.pi
    angle = layers.RandomRotation((-0.05, 0.2), seed=1).get_random_transformation(x)["angle"]
    assert angle.min() >= -0.1 * math.pi and angle.max() <= 0.4 * math.pi and angle.min() < 0
    zoom = layers.RandomZoom((-0.3, -0.1), (0.2, 0.5), seed=1).get_random_transformation(x)
    assert zoom["height_zoom"].min() >= 0.7 and zoom["height_zoom"].max() <= 0.9
    assert zoom["width_zoom"].min() >= 1.2 and zoom["width_zoom"].max() <= 1.5
    shift = layers.RandomTranslation(0.5, (0.1, 0.2), seed=1).get_random_transformation(x)
    assert shift["height_shift"].min() >= -2 and shift["height_shift"].max() <= 2  # height 4
    assert shift["height_shift"].min() < -1.5 and shift["height_shift"].max() > 1.5
    assert shift["width_shift"].min() >= 1 and shift["width_shift"].max() <= 2  # width 10


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("make", EVERY_LAYER, ids=LAYER_IDS)
def test_a_seed_repeats_the_draws_and_another_seed_changes_them(make, rng):
    x = images(rng, (8, 6, 6, 2))
    first = make(seed=21)(x, training=True).numpy()
    np.testing.assert_array_equal(make(seed=21)(x, training=True).numpy(), first)
    assert not np.array_equal(make(seed=22)(x, training=True).numpy(), first)


@pytest.mark.parametrize("make", EVERY_LAYER, ids=LAYER_IDS)
def test_set_seed_makes_unseeded_layers_repeat_and_each_call_draws_afresh(make, rng):
    x = images(rng, (8, 6, 6, 2))
    utils.set_seed(5)
    layer = make()
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert not np.array_equal(first, second)
    utils.set_seed(5)
    again = make()
    np.testing.assert_array_equal(again(x, training=True).numpy(), first)
    np.testing.assert_array_equal(again(x, training=True).numpy(), second)


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("make", EVERY_LAYER, ids=LAYER_IDS)
def test_a_single_image_is_augmented_as_a_batch_of_one(make, rng):
    image = images(rng, (6, 7, 3))
    out = make(seed=4)(image, training=True)
    batched = make(seed=4)(image[None], training=True)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out.numpy(), batched.numpy()[0])


def test_integer_images_become_floats(rng):
    x = (rng.random((2, 6, 6, 3)) * 255).astype(np.uint8)
    out = layers.RandomRotation((0.5, 0.5), interpolation="nearest")(x, training=True)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), np.rot90(x, 2, axes=(1, 2)).astype(np.float32))


def test_float64_layers_keep_float64(rng):
    x = images(rng, dtype="float64")
    assert layers.RandomZoom(0.2, dtype="float64", seed=1)(x, training=True).dtype == np.float64


@pytest.mark.parametrize("shape", [(2, 3), (1, 2, 3, 4, 5)])
def test_inputs_that_are_not_images_are_refused(shape):
    layer = layers.RandomFlip(name="flip_checked")
    with pytest.raises(ValueError, match=r"flip_checked.*\(batch, height, width, channels\)"):
        layer(np.zeros(shape, np.float32), training=True)


# --------------------------------------------------------------------------- models


def augmentation_stack():
    return Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.2)])


def test_layers_work_symbolically_in_a_functional_model(rng):
    inputs = layers.Input(shape=(10, 12, 3))
    x = layers.RandomFlip("vertical", seed=1)(inputs)
    x = layers.RandomTranslation(0.1, 0.2, seed=2)(x)
    outputs = layers.RandomZoom(0.2, seed=3)(x)
    assert outputs.shape == (None, 10, 12, 3)
    model = Model(inputs, outputs)
    data = images(rng, (3, 10, 12, 3))
    np.testing.assert_array_equal(model(data, training=False).numpy(), data)
    trained = model(data, training=True)
    assert trained.shape == data.shape and not np.array_equal(trained.numpy(), data)


def test_cats_vs_dogs_convnet_runs_with_the_books_augmentation_stack(rng):
    utils.set_seed(0)
    model = convlab.applications.cats_vs_dogs_convnet(augmentation=augmentation_stack(), dropout=0.5)
    plain = convlab.applications.cats_vs_dogs_convnet(dropout=0.5)
    plain.set_weights(model.get_weights())  # the stack has no weights: the rest is the same
    data = images(rng, (2, 180, 180, 3)) * 255
    inference = model(data, training=False).numpy()
    np.testing.assert_allclose(inference, plain(data, training=False).numpy(), rtol=1e-6)
    training = model(data, training=True).numpy()
    assert training.shape == (2, 1) and np.all((training > 0) & (training < 1))


# --------------------------------------------------------------------------- configs


CONFIGURED = [
    lambda: layers.RandomFlip("vertical", seed=3, name="flip"),
    lambda: layers.RandomRotation((-0.1, 0.3), fill_mode="constant", interpolation="nearest", seed=4,
                                  fill_value=1.5),
    lambda: layers.RandomZoom(0.2, (-0.1, 0.4), fill_mode="wrap", seed=None, dtype="float64"),
    lambda: layers.RandomZoom((-0.2, 0.1)),
    lambda: layers.RandomTranslation(0.1, (0.0, 0.2), fill_mode="nearest", interpolation="bilinear", seed=7),
]


@pytest.mark.parametrize("make", CONFIGURED, ids=["flip", "rotation", "zoom", "zoom_keep_ratio", "translation"])
def test_config_round_trips_through_json(make):
    layer = make()
    config = json.loads(json.dumps(layer.get_config()))
    rebuilt = type(layer).from_config(config)
    assert json.loads(json.dumps(rebuilt.get_config())) == config
    attributes = ("mode", "factor", "height_factor", "width_factor", "fill_mode", "interpolation", "seed",
                  "fill_value", "dtype")
    settings = lambda l: json.loads(json.dumps({name: getattr(l, name) for name in attributes if hasattr(l, name)}))
    assert settings(rebuilt) == settings(layer)


def test_seeded_layer_rebuilt_from_its_config_draws_the_same(rng):
    layer = layers.RandomRotation(0.3, seed=12)
    rebuilt = layers.RandomRotation.from_config(layer.get_config())
    x = images(rng)
    np.testing.assert_array_equal(rebuilt(x, training=True).numpy(), layer(x, training=True).numpy())


def test_augmentation_stack_round_trips_through_a_sequential_config():
    stack = augmentation_stack()
    config = json.loads(json.dumps(stack.get_config()))
    rebuilt = Sequential.from_config(config)
    assert [type(layer).__name__ for layer in rebuilt.layers] == ["RandomFlip", "RandomRotation", "RandomZoom"]
    assert [layer.get_config() for layer in rebuilt.layers] == [layer.get_config() for layer in stack.layers]


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("make, argument, given", [
    (lambda: layers.RandomFlip("diagonal"), "mode", "'diagonal'"),
    (lambda: layers.RandomFlip(seed="abc"), "seed", "'abc'"),
    (lambda: layers.RandomFlip(seed=1.5), "seed", "1.5"),
    (lambda: layers.RandomRotation(1.5), "factor", "1.5"),
    (lambda: layers.RandomRotation((0.2, 0.1)), "factor", r"\(0.2, 0.1\)"),
    (lambda: layers.RandomRotation((0.1,)), "factor", r"\(0.1,\)"),
    (lambda: layers.RandomRotation("0.1"), "factor", "'0.1'"),
    (lambda: layers.RandomRotation(float("nan")), "factor", "nan"),
    (lambda: layers.RandomRotation(0.1, fill_mode="mirror"), "fill_mode", "'mirror'"),
    (lambda: layers.RandomRotation(0.1, interpolation="bicubic"), "interpolation", "'bicubic'"),
    (lambda: layers.RandomRotation(0.1, fill_value="black"), "fill_value", "'black'"),
    (lambda: layers.RandomZoom(1.0), "height_factor", r"1.0 \(the range \[-1, 1\]\)"),
    (lambda: layers.RandomZoom((-1.0, 0.2)), "height_factor", r"\(-1.0, 0.2\)"),
    (lambda: layers.RandomZoom(0.2, (0.3, 1.5)), "width_factor", r"\(0.3, 1.5\)"),
    (lambda: layers.RandomZoom(0.2, (0.3, -0.3)), "width_factor", r"\(0.3, -0.3\)"),
    (lambda: layers.RandomTranslation(0.1, 1.2), "width_factor", "1.2"),
    (lambda: layers.RandomTranslation((-1.5, 0.0), 0.1), "height_factor", r"\(-1.5, 0.0\)"),
    (lambda: layers.RandomTranslation(0.1, None), "width_factor", "None"),
])
def test_bad_arguments_are_named_in_the_error(make, argument, given):
    with pytest.raises(ValueError, match=rf"{argument} .*{given}"):
        make()


# --------------------------------------------------------------------------- GPU


@pytest.mark.cuda
@pytest.mark.parametrize("make", [
    lambda: layers.RandomFlip(seed=3),
    lambda: layers.RandomRotation(0.3, fill_mode="reflect", seed=3),
    lambda: layers.RandomZoom(0.4, fill_mode="constant", interpolation="nearest", seed=3),
    lambda: layers.RandomTranslation(0.3, 0.3, fill_mode="wrap", seed=3),
], ids=LAYER_IDS)
def test_cuda_arrays_get_the_same_augmentation_as_numpy_arrays(make, rng):
    x = images(rng, (4, 9, 11, 3))
    on_gpu = make()(Tensor(x).to("cuda"), training=True)
    assert on_gpu.device == "cuda"
    np.testing.assert_allclose(on_gpu.numpy(), make()(x, training=True).numpy(), rtol=0, atol=1e-5)
