"""convlab.viz: activation grids, filter weights and patterns, Grad-CAM, jet, training curves.

Each result is compared with something computed another way: layers run one by one,
grids assembled by padding and reshaping, gradients by finite differences (float64
models), matplotlib's own jet table.
"""

import math
import os

import numpy as np
import pytest
from PIL import Image

import convlab
import convlab.__main__
from convlab import Model, applications, layers, utils, viz
from convlab.layers import InputLayer
from convlab.testing import assert_close, numerical_gradient


@pytest.fixture
def float64():
    utils.set_floatx("float64")
    yield
    utils.set_floatx("float32")


def mnist_model(seed=0):
    utils.set_seed(seed)
    return applications.mnist_convnet()


def conv_names(model):
    return [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]


def run_layer_by_layer(model, image, until=None):
    """{layer name: output} of a sequential-like model, each layer called on the previous
    output, up to the layer named `until` (default: all)."""
    outputs, x = {}, convlab.Tensor(image[None] if image.ndim == 3 else image)
    with convlab.no_grad():
        for layer in model.layers:
            if isinstance(layer, InputLayer):
                continue
            x = layer(x)
            outputs[layer.name] = x.numpy()
            if layer.name == until:
                break
    return outputs


def interior_mean(model, image, layer_name, filter_index):
    """The filter-pattern loss, computed by running the layers one by one."""
    activation = run_layer_by_layer(model, image, until=layer_name)[layer_name]
    return float(activation[0, 2:-2, 2:-2, filter_index].mean())


# --------------------------------------------------------------------------- activations


def test_activation_model_outputs_equal_the_layers_run_one_by_one(rng):
    model = mnist_model()
    image = rng.random((28, 28, 1)).astype(np.float32)
    outputs = viz.activation_model(model)(image[None])
    reference = run_layer_by_layer(model, image)
    expected_names = [layer.name for layer in model.layers
                      if isinstance(layer, (layers.Conv2D, layers.MaxPooling2D))]
    assert len(outputs) == len(expected_names) == 5
    for name, output in zip(expected_names, outputs):
        np.testing.assert_allclose(output.numpy(), reference[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_activation_model_keeps_the_order_of_the_names_given(rng):
    model = mnist_model()
    first, second = conv_names(model)[:2]
    image = rng.random((1, 28, 28, 1)).astype(np.float32)
    outputs = viz.activation_model(model, [second, first])(image)
    reference = run_layer_by_layer(model, image)
    np.testing.assert_allclose(outputs[0].numpy(), reference[second], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(outputs[1].numpy(), reference[first], rtol=1e-6, atol=1e-7)


def test_activation_model_unknown_name_is_an_error_listing_the_valid_names():
    model = mnist_model()
    with pytest.raises(ValueError, match=r"layer_names.*'no_such_layer'.*valid layer names:.*" + conv_names(model)[1]):
        viz.activation_model(model, ["no_such_layer"])


def reference_grid(activation, images_per_row):
    """The book's grid, vectorized: normalize every channel at once, pad each to
    (h + 1, w + 1) with black, tile by reshaping, cut the last gap row and column."""
    h, w, c = activation.shape
    x = activation.astype(np.float64)
    mean = x.mean(axis=(0, 1))
    std = x.std(axis=(0, 1))
    normalized = (x - mean) / np.where(std > 0, std, 1.0) * 64 + 128
    shown = np.where((x != 0).any(axis=(0, 1)), normalized, x)
    pixels = np.clip(shown, 0, 255).astype(np.uint8)
    rows = -(-c // images_per_row)
    cells = np.zeros((h + 1, w + 1, rows * images_per_row), dtype=np.uint8)
    cells[:h, :w, :c] = pixels
    tiled = cells.reshape(h + 1, w + 1, rows, images_per_row).transpose(2, 0, 3, 1)
    return tiled.reshape(rows * (h + 1), images_per_row * (w + 1))[:-1, :-1]


def test_activation_grid_matches_a_vectorized_reference_and_keeps_dead_channels_black(rng):
    activation = np.maximum(rng.standard_normal((1, 7, 9, 21)), 0).astype(np.float32)
    activation[0, :, :, 3] = 0.0  # a dead ReLU channel
    activation[0, :, :, 20] = 0.0
    grid = viz.activation_grid(activation, images_per_row=4)
    expected = reference_grid(activation[0], 4)
    assert grid.dtype == np.uint8
    np.testing.assert_array_equal(grid, expected)
    dead_cell = grid[0:7, 3 * 10:3 * 10 + 9]  # channel 3: row 0, column 3
    assert not dead_cell.any()
    assert grid[0:7, 0:9].any()  # while a live channel is not black


@pytest.mark.parametrize("size, channels, images_per_row", [(26, 32, 16), (13, 64, 16), (3, 128, 16), (5, 10, 4),
                                                            (11, 1, 16)])
def test_activation_grid_size_is_the_books_formula(size, channels, images_per_row, rng):
    activation = rng.random((size, size, channels))
    grid = viz.activation_grid(activation, images_per_row=images_per_row)
    n_rows = math.ceil(channels / images_per_row)
    assert grid.shape == ((size + 1) * n_rows - 1, images_per_row * (size + 1) - 1)


def test_activation_grid_rejects_a_batch_of_two():
    with pytest.raises(ValueError, match=r"activations.*\(2, 4, 4, 3\)"):
        viz.activation_grid(np.ones((2, 4, 4, 3)))


def enlarged_reference(grid, height, width, channels, per_row, scale, gap=2):
    """The PNG's picture built from the book's grid another way: each cell cut out of the grid,
    every pixel made a scale x scale block with np.kron, pasted on white gap_value 255."""
    rows = -(-channels // per_row)
    cell_h, cell_w = height * scale, width * scale
    picture = np.full((rows * cell_h + (rows - 1) * gap, per_row * cell_w + (per_row - 1) * gap), 255, np.uint8)
    for index in range(channels):
        row, column = divmod(index, per_row)
        cell = grid[row * (height + 1):row * (height + 1) + height, column * (width + 1):column * (width + 1) + width]
        block = np.kron(cell, np.ones((scale, scale), np.uint8))
        picture[row * (cell_h + gap):row * (cell_h + gap) + cell_h,
                column * (cell_w + gap):column * (cell_w + gap) + cell_w] = block
    return picture


def test_activation_grid_png_enlarges_each_channel_under_a_title_strip(tmp_path, rng):
    activation = np.maximum(rng.standard_normal((6, 6, 21)), 0)
    activation[:, :, 4] = 0  # a dead channel: black, between white separators
    path = tmp_path / "layer.png"
    grid = viz.activation_grid(activation, layer_name="conv2d_7", path=path, images_per_row=8)
    np.testing.assert_array_equal(grid, reference_grid(activation, 8))  # the returned grid is still the book's
    written = np.asarray(Image.open(path))
    scale = math.ceil(64 / 6)  # 11: each 6 x 6 channel becomes 66 x 66
    expected = enlarged_reference(grid, 6, 6, 21, 8, scale)
    assert expected.shape == (3 * 66 + 2 * 2, 8 * 66 + 7 * 2)
    strip = written.shape[0] - expected.shape[0]
    assert strip > 5
    np.testing.assert_array_equal(written[strip:, :expected.shape[1]], expected)
    assert (written[:strip] < 128).any()  # the title's dark text on the light strip
    assert os.listdir(tmp_path) == ["layer.png"]  # no temporary file left behind
    few = viz.activation_grid(activation[:, :, :3], path=tmp_path / "few.png", png_tile_size=12)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "few.png")),
                                  enlarged_reference(few, 6, 6, 3, 3, 2))  # 3 channels: one row of 3, 2x


def test_activation_grids_write_one_png_per_layer_named_after_it(tmp_path, rng):
    model = mnist_model()
    image = rng.random((28, 28, 1)).astype(np.float32)
    grids = viz.activation_grids(model, image, out_dir=tmp_path)
    reference = run_layer_by_layer(model, image)
    assert sorted(os.listdir(tmp_path)) == sorted(f"{name}.png" for name in grids)
    for name, grid in grids.items():
        np.testing.assert_array_equal(grid, reference_grid(reference[name][0], 16))


# --------------------------------------------------------------------------- filter weights


def test_filter_weights_grid_normalizes_the_whole_kernel_and_lays_filters_out_in_rows(rng):
    layer = layers.Conv2D(5, 3)
    layer.build((None, 8, 8, 2))
    kernel = rng.standard_normal((3, 3, 2, 5)).astype(np.float32)
    layer.set_weights([kernel, np.zeros(5, np.float32)])
    grid = viz.filter_weights_grid(layer, filters_per_row=3)
    # 3 filters to a row, each 2 cells (its input channels) wide: 2 rows of 6 cells of 3 x 3
    assert grid.shape == (2 * 4 - 1, 6 * 4 - 1)

    def cell(f, c):
        row, column = divmod(f * 2 + c, 6)
        return grid[row * 4:row * 4 + 3, column * 4:column * 4 + 3]

    for which, value in ((np.argmin, 0.0), (np.argmax, 1.0)):
        i, j, c, f = np.unravel_index(which(kernel), kernel.shape)
        assert cell(f, c)[i, j] == value
    for f in range(5):
        for c in range(2):
            expected = (kernel[:, :, c, f] - kernel.min()) / (kernel.max() - kernel.min())
            np.testing.assert_allclose(cell(f, c), expected, rtol=1e-6)
    np.testing.assert_array_equal(grid[4:, 4 * 4:], 1.0)  # the sixth filter's place is empty: white
    assert viz.filter_weights_grid(kernel[:, :, :1, :4]).shape == (3, 4 * 4 - 1)  # fewer than 8: one row


def test_filter_weights_png_enlarges_each_cell_and_separates_the_filters(tmp_path, rng):
    kernel = rng.standard_normal((3, 3, 1, 32))  # the MNIST convnet's first layer
    grid = viz.filter_weights_grid(kernel, path=tmp_path / "weights.png", scale=5)
    written = np.asarray(Image.open(tmp_path / "weights.png"))
    assert grid.shape == (4 * 4 - 1, 8 * 4 - 1)  # 8 filters to a row, 4 rows
    assert written.shape == (4 * 15 + 3 * 6, 8 * 15 + 7 * 6)  # cells 3 * 5 pixels, filters 6 pixels apart
    pixels = np.round(grid * 255).astype(np.uint8)
    for f in range(32):
        row, column = divmod(f, 8)
        top, left = row * 21, column * 21
        np.testing.assert_array_equal(written[top:top + 15, left:left + 15],
                                      np.kron(pixels[row * 4:row * 4 + 3, column * 4:column * 4 + 3],
                                              np.ones((5, 5), np.uint8)))
    assert (written[15:21] == 255).all() and (written[:, 15:21] == 255).all()  # white between filters
    kernel = rng.standard_normal((2, 2, 3, 2))  # an RGB first layer: each filter's 3 cells 2 pixels apart
    viz.filter_weights_grid(kernel, path=tmp_path / "rgb.png", scale=4)
    assert Image.open(tmp_path / "rgb.png").size == (2 * (3 * 8 + 2 * 2) + 6, 8)


# --------------------------------------------------------------------------- filter patterns


def test_filter_pattern_raises_each_filters_activation_tenfold(rng):
    model = mnist_model(seed=1)
    noise = rng.uniform(0.4, 0.6, (28, 28, 1)).astype(np.float32)
    start = run_layer_by_layer(model, noise)
    for layer_name in conv_names(model)[:2]:
        # Filters dead on the starting noise have zero gradient and never move; take live ones.
        live = [f for f in range(start[layer_name].shape[-1]) if start[layer_name][0, 2:-2, 2:-2, f].mean() > 1e-3]
        assert len(live) >= 4
        for f in live[:4]:
            before = interior_mean(model, noise, layer_name, f)
            pattern = viz.filter_pattern(model, layer_name, f, iterations=30, initial_image=noise)
            assert pattern.shape == (28, 28, 1)
            after = interior_mean(model, pattern, layer_name, f)
            assert after >= 10 * before, (layer_name, f, before, after)


def small_convnet(input_shape=(16, 16, 1)):
    """Conv, max pool, conv: the mnist convnet's first stages, on a smaller input."""
    inputs = layers.Input(input_shape)
    x = layers.Conv2D(6, 3, activation="relu", name="first")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(5, 3, activation="relu", padding="same", name="second")(x)
    return Model(inputs, x)


def test_one_ascent_step_follows_the_finite_difference_gradient(float64, rng):
    utils.set_seed(2)
    model = small_convnet()  # 16 x 16 pixels keep the finite differences quick
    layer_name = "second"
    noise = rng.uniform(0.4, 0.6, (16, 16, 1))
    f = int(np.argmax(run_layer_by_layer(model, noise)[layer_name][0, 2:-2, 2:-2].mean(axis=(0, 1))))
    stepped = viz.filter_pattern(model, layer_name, f, iterations=1, learning_rate=10.0, initial_image=noise)
    (gradient,) = numerical_gradient(lambda x: np.array(interior_mean(model, x, layer_name, f)), [noise],
                                     np.array(1.0))
    expected = noise + 10.0 * gradient / np.linalg.norm(gradient)
    assert_close(stepped, expected, rtol=1e-6, name="image after one step")


def test_a_filter_with_zero_gradient_leaves_the_image_unchanged(rng):
    inputs = layers.Input((10, 10, 1))
    conv = layers.Conv2D(2, 3, activation="relu", bias_initializer="zeros", name="dead")
    model = Model(inputs, conv(inputs))
    kernel = np.abs(rng.standard_normal((3, 3, 1, 2))).astype(np.float32)
    conv.set_weights([kernel, np.array([-100.0, -100.0], np.float32)])  # relu(x * w - 100) = 0 here
    noise = rng.uniform(0.4, 0.6, (10, 10, 1)).astype(np.float32)
    result = viz.filter_pattern(model, "dead", 1, iterations=3, initial_image=noise)
    np.testing.assert_array_equal(result, noise)


def test_filter_pattern_checks_its_arguments():
    model = mnist_model()
    name = conv_names(model)[0]
    with pytest.raises(ValueError, match=r"filter_index.*\[0, 32\).*32"):
        viz.filter_pattern(model, name, 32)
    with pytest.raises(ValueError, match=r"size=40.*\(None, 28, 28, 1\)"):
        viz.filter_pattern(model, name, 0, size=40)
    with pytest.raises(ValueError, match=r"layer_name.*'nope'"):
        viz.filter_pattern(model, "nope", 0)


def book_deprocess(x, crop):
    x = x.astype(np.float64)
    x = (x - x.mean()) / x.std() * 64 + 128
    return np.clip(x, 0, 255).astype("uint8")[crop:-crop, crop:-crop]


def test_deprocess_image_is_the_books_formula_with_a_scaled_crop(rng):
    image = rng.standard_normal((200, 200, 3)) * 3 + 1
    np.testing.assert_array_equal(viz.deprocess_image(image), book_deprocess(image, 25))  # the book's 25 at 200 px
    small = rng.standard_normal((40, 48, 1))
    result = viz.deprocess_image(small)  # round(25 * 40 / 200) = 5
    assert result.shape == (30, 38, 1)
    np.testing.assert_array_equal(result, book_deprocess(small, 5))
    np.testing.assert_array_equal(viz.deprocess_image(small, crop=2), book_deprocess(small, 2))
    assert viz.deprocess_image(rng.random((3, 3, 1))).shape == (3, 3, 1)  # round(0.375) = 0
    assert viz.deprocess_image(rng.random((9, 9, 1))).shape == (7, 7, 1)  # round(1.125) = 1
    np.testing.assert_array_equal(viz.deprocess_image(np.full((8, 8, 1), 0.7), crop=0), 128)  # std 0
    with pytest.raises(ValueError, match=r"crop.*at most 3.*got 4"):
        viz.deprocess_image(small[:8, :8], crop=4)


def test_filter_patterns_grid_stitches_the_patterns_with_margins(rng):
    model = mnist_model(seed=3)
    name = conv_names(model)[0]
    grid = viz.filter_patterns_grid(model, name, n=5, iterations=2, margin=5, seed=11)
    cropped = 28 - 2 * 4  # default crop round(25 * 28 / 200) = 4
    assert grid.shape == (2 * cropped + 5, 3 * cropped + 2 * 5)  # 5 patterns: 3 per row, 2 rows
    generator = np.random.default_rng(11)
    for index in range(5):
        tile = viz.deprocess_image(viz.filter_pattern(model, name, index, iterations=2, seed=generator))[:, :, 0]
        row, column = divmod(index, 3)
        top, left = row * (cropped + 5), column * (cropped + 5)
        np.testing.assert_array_equal(grid[top:top + cropped, left:left + cropped], tile)
    assert not grid[cropped:cropped + 5].any()  # the margin between rows is black
    assert not grid[cropped + 5:, 2 * (cropped + 5):].any()  # the empty sixth place too


def test_filter_patterns_grid_of_64_is_8_by_8_and_rgb_models_give_rgb(rng):
    utils.set_seed(4)
    inputs = layers.Input((None, None, 1))
    model = Model(inputs, layers.Conv2D(64, 3, activation="relu", name="wide")(inputs))
    grid = viz.filter_patterns_grid(model, "wide", n=64, size=24, iterations=1, seed=0)
    cropped = 24 - 2 * 3  # crop round(25 * 24 / 200) = 3
    assert grid.shape == (8 * cropped + 7 * 5, 8 * cropped + 7 * 5)  # the book's n * cropped + (n - 1) * margin
    inputs = layers.Input((None, None, 3))
    x = layers.Conv2D(4, 3, activation="relu")(inputs)
    x = layers.Conv2D(6, 3, activation="relu", name="second")(x)
    rgb_model = Model(inputs, x)
    grid = viz.filter_patterns_grid(rgb_model, "second", n=4, size=(40, 48), iterations=2, margin=3, seed=0)
    assert grid.shape == (2 * 30 + 3, 2 * 38 + 3, 3)  # crop round(25 * 40 / 200) = 5


# --------------------------------------------------------------------------- Grad-CAM


def grad_cam_by_finite_differences(activation, head, class_index):
    """Grad-CAM from dy_c/dA estimated by central differences on A."""
    (g,) = numerical_gradient(lambda a: head(a)[0, class_index], [activation], np.array(1.0))
    weights = g.mean(axis=(0, 1, 2))
    heatmap = np.maximum((activation[0] * weights).mean(axis=-1), 0)
    return heatmap / heatmap.max() if heatmap.max() > 0 else heatmap


def dense_head(flatten, dense, activation=True):
    """The layers after the last conv as a numpy function; activation=False stops before the softmax/sigmoid."""

    def head(a):
        with convlab.no_grad():
            features = flatten(convlab.Tensor(a)).numpy()
        scores = features @ dense.kernel.numpy() + dense.bias.numpy()
        if not activation:
            return scores
        with convlab.no_grad():
            return dense(flatten(convlab.Tensor(a))).numpy()

    return head


@pytest.mark.parametrize("score", ["logit", "output"])
def test_grad_cam_matches_finite_differences_on_the_head_of_the_mnist_convnet(float64, rng, score):
    model = mnist_model(seed=5)
    last_conv = conv_names(model)[-1]
    image = rng.random((28, 28, 1))
    outputs = run_layer_by_layer(model, image)
    activation = outputs[last_conv]
    flatten, dense = model.layers[-2], model.layers[-1]
    # "logit": the score before the softmax, computed here from the Dense weights by hand
    head = dense_head(flatten, dense, activation=score == "output")
    scores = head(activation)
    if score == "logit":  # the hand-made scores are those behind the model's softmax
        scores = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    assert_close(scores, outputs[dense.name], rtol=1e-9, name="head")

    top = int(np.argmax(outputs[dense.name][0]))
    expected = grad_cam_by_finite_differences(activation, head, top)
    assert expected.max() == 1.0 and (expected < 1).any()
    heatmap = viz.grad_cam(model, image, last_conv, score=score)  # the top class by default
    assert heatmap.shape == (3, 3)
    assert_close(heatmap, expected, rtol=1e-6, name="heatmap")
    for other in [c for c in range(10) if c != top]:  # up to a class with some positive evidence
        expected = grad_cam_by_finite_differences(activation, head, other)
        heatmap = viz.grad_cam(model, image, last_conv, class_index=other, score=score)
        assert_close(heatmap, expected, rtol=1e-6, atol=1e-12, name=f"heatmap of class {other}")
        if expected.max() > 0:
            break
    assert expected.max() == 1.0


def test_grad_cam_scores_differ_once_the_softmax_saturates(float64, rng):
    # a confident prediction: the probability's gradient is the logit's times p(1 - p) less the
    # other classes' share, so the two heatmaps differ; the default is the logit's
    model = mnist_model(seed=5)
    last_conv = conv_names(model)[-1]
    dense = model.layers[-1]
    image = rng.random((28, 28, 1))
    while model.predict(image[None])[0].max() < 0.99:  # sharpen the head until it is sure
        dense.kernel.assign(dense.kernel.numpy() * 2)
    by_logit = viz.grad_cam(model, image, last_conv)
    by_output = viz.grad_cam(model, image, last_conv, score="output")
    assert_close(by_logit, viz.grad_cam(model, image, last_conv, score="logit"), rtol=0, name="default")
    assert np.abs(by_logit - by_output).max() > 1e-3
    with pytest.raises(ValueError, match=r"score must be 'logit'.*'output'.*got 'probability'"):
        viz.grad_cam(model, image, last_conv, score="probability")


@pytest.mark.parametrize("score", ["logit", "output"])
def test_grad_cam_of_a_single_sigmoid_unit(float64, rng, score):
    utils.set_seed(6)
    inputs = layers.Input((9, 9, 2))
    conv = layers.Conv2D(4, 3, activation="relu", name="features")
    x = conv(inputs)
    flatten, dense = layers.Flatten(), layers.Dense(1, activation="sigmoid")
    model = Model(inputs, dense(flatten(x)))
    image = rng.standard_normal((1, 9, 9, 2))
    with convlab.no_grad():
        activation = conv(convlab.Tensor(image)).numpy()

    head = dense_head(flatten, dense, activation=score == "output")
    expected = grad_cam_by_finite_differences(activation, head, 0)
    assert_close(viz.grad_cam(model, image, "features", score=score), expected, rtol=1e-6, name="heatmap")
    with pytest.raises(ValueError, match=r"class_index.*\[0, 1\).*got 1"):
        viz.grad_cam(model, image, "features", class_index=1)
    with pytest.raises(ValueError, match=r"last_conv_layer_name.*'feature'.*features"):
        viz.grad_cam(model, image, "feature")


def test_grad_cam_of_a_linear_head_differentiates_the_output(float64, rng):
    # no softmax or sigmoid: the output is the score, whichever is asked for
    utils.set_seed(8)
    inputs = layers.Input((9, 9, 2))
    conv = layers.Conv2D(4, 3, activation="relu", name="features")
    flatten, dense = layers.Flatten(), layers.Dense(3)
    model = Model(inputs, dense(flatten(conv(inputs))))
    image = rng.standard_normal((1, 9, 9, 2))
    with convlab.no_grad():
        activation = conv(convlab.Tensor(image)).numpy()
    expected = grad_cam_by_finite_differences(activation, dense_head(flatten, dense, activation=False), 2)
    for score in ("logit", "output"):
        assert_close(viz.grad_cam(model, image, "features", class_index=2, score=score), expected, rtol=1e-6,
                     name=f"heatmap, score={score}")


def test_resize_heatmap_is_pils_bilinear_enlargement(rng):
    from PIL import Image

    heatmap = rng.random((6, 7))
    for size in [(48, 48), (44, 50), (6, 7), (13, 29)]:
        resized = viz.resize_heatmap(heatmap, size)
        expected = np.asarray(Image.fromarray(heatmap.astype(np.float32), "F").resize(size[::-1], Image.BILINEAR))
        assert resized.shape == size and resized.dtype == np.float64
        np.testing.assert_allclose(resized, expected, atol=1e-6)
    # a 7x enlargement puts pixel centres on the cell centres, where the values are the cells' own
    assert_close(viz.resize_heatmap(heatmap, (42, 49))[3::7, 3::7], heatmap, rtol=1e-15, name="cells")
    with pytest.raises(ValueError, match=r"size must be \(height, width\).*\(6, 7\), got \(5, 7\)"):
        viz.resize_heatmap(heatmap, (5, 7))
    with pytest.raises(ValueError, match=r"heatmap must be 2-D"):
        viz.resize_heatmap(heatmap[None], (12, 14))


def test_find_last_conv_layer_is_the_last_conv2d():
    model = mnist_model()
    assert viz.find_last_conv_layer(model) == conv_names(model)[-1]


def test_find_last_conv_layer_passes_over_residual_1x1_projections():
    from convlab import applications

    model = applications.mini_xception(input_shape=(48, 48, 3), num_classes=3, block_sizes=(8, 16))
    convs = [layer for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.SeparableConv2D))]
    # built last: the 1x1 strided shortcut of the second block; the main path ends in its second separable conv
    assert isinstance(convs[-1], layers.Conv2D) and convs[-1].kernel_size == (1, 1)
    main_path = [layer for layer in convs if isinstance(layer, layers.SeparableConv2D)]
    assert viz.find_last_conv_layer(model) == main_path[-1].name == convs[-2].name
    # a model made only of 1x1 convs still has an answer: its last one
    inputs = layers.Input((8, 8, 3))
    pointwise = layers.Conv2D(4, 1, name="pointwise")
    model = Model(inputs, layers.Dense(2)(layers.Flatten()(pointwise(layers.Conv2D(4, 1)(inputs)))))
    assert viz.find_last_conv_layer(model) == "pointwise"


def test_find_last_conv_layer_keeps_a_1x1_conv_on_the_main_path():
    """EfficientNet-Lite0's 3x3 and 5x5 convs after its stem are all depthwise; its last
    Conv2D is the 1x1 head conv (7x7x1280 at 224x224), which no Add reads: that one, not the
    stem, as Keras' Grad-CAM example for EfficientNet takes the head's output."""
    from convlab import applications

    model = applications.efficientnet_lite0(weights=None, input_shape=(64, 64, 3))
    convs = [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert convs[0] == "stem_conv" and convs[-1] == "top_conv"
    assert viz.find_last_conv_layer(model) == "top_conv"


@pytest.mark.cuda
def test_grad_cam_on_cuda_matches_the_cpu(rng):
    cupy = pytest.importorskip("cupy")
    model = mnist_model(seed=7)
    last_conv = conv_names(model)[-1]
    image = rng.random((28, 28, 1)).astype(np.float32)
    on_cpu = viz.grad_cam(model, image, last_conv)
    model.to("cuda")
    on_gpu = viz.grad_cam(model, cupy.asarray(image), last_conv)
    assert isinstance(on_gpu, np.ndarray)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)


# --------------------------------------------------------------------------- jet and overlay


def test_jet_equals_matplotlibs_256_colour_table():
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib is the reference for jet")
    table = matplotlib.colormaps["jet"](np.arange(256))[:, :3]
    np.testing.assert_allclose(viz.jet(np.arange(256, dtype=np.uint8)), table, atol=1e-6)
    np.testing.assert_allclose(viz.jet(np.arange(256) / 255.0), table, atol=1e-6)


def test_jet_hand_values():
    np.testing.assert_allclose(viz.jet(0.0), [0, 0, 0.5])
    np.testing.assert_allclose(viz.jet(1.0), [0.5, 0, 0])
    np.testing.assert_allclose(viz.jet(0.5), [0.15 / 0.31, 1.0, 0.15 / 0.31])  # between 0.35 and 0.66, 0.34 and 0.65
    np.testing.assert_allclose(viz.jet(np.uint8(255)), [0.5, 0, 0])
    assert viz.jet(np.zeros((4, 5))).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\].*1.5"):
        viz.jet(np.array([0.2, 1.5]))


def test_overlay_heatmap_is_the_books_superimposition(rng):
    image = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    heatmap = rng.random((4, 5))
    overlay = viz.overlay_heatmap(image, heatmap)
    assert overlay.shape == (20, 30, 3) and overlay.dtype == np.uint8
    colours = np.round(viz.jet(np.uint8(255 * heatmap)) * 255).astype(np.uint8)
    resized = np.asarray(Image.fromarray(colours).resize((30, 20), Image.BILINEAR), dtype=np.float64)
    superimposed = image + 0.4 * resized
    expected = ((superimposed - superimposed.min()) / (superimposed.max() - superimposed.min()) * 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay, expected)


def test_overlay_of_a_uniform_heatmap_on_a_grayscale_image_by_hand(tmp_path):
    image = np.tile(np.arange(10, dtype=np.float64) * 20, (6, 1))  # (6, 10), 0..180
    overlay = viz.overlay_heatmap(image, np.ones((2, 2)), path=tmp_path / "overlay.png", png_size=10)
    # jet(1) = (0.5, 0, 0) -> (128, 0, 0): red gets 0.4 * 128 = 51.2 more; the range is 0..231.2
    red, rest = (image + 51.2) / 231.2 * 255, image / 231.2 * 255
    np.testing.assert_array_equal(overlay[:, :, 0], red.astype(np.uint8))
    np.testing.assert_array_equal(overlay[:, :, 1], rest.astype(np.uint8))
    np.testing.assert_array_equal(overlay[:, :, 2], rest.astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "overlay.png")), overlay)  # png_size=10: as is
    viz.overlay_heatmap(image, np.ones((2, 2)), path=tmp_path / "large.png")  # 224 // 10: 22 times larger
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "large.png")),
                                  np.kron(overlay, np.ones((22, 22, 1), np.uint8)))


# --------------------------------------------------------------------------- training curves


HISTORY = {"loss": [0.9, 0.5, 0.35, 0.3, 0.28], "val_loss": [0.8, 0.55, 0.5, 0.52, 0.6],
           "accuracy": [0.6, 0.8, 0.86, 0.9, 0.92], "val_accuracy": [0.65, 0.78, 0.8, 0.79, 0.78]}


class History:
    history = HISTORY


def colour_pixels(image, colour):
    return (image == np.array(colour, dtype=np.uint8)).all(axis=-1)


def test_plot_history_with_pillow_draws_dots_and_lines_in_both_panels(tmp_path):
    image = viz.plot_history(History(), path=tmp_path / "curves.png", backend="pillow", size=(640, 360))
    assert image.shape == (360, 640, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "curves.png").convert("RGB")), image)
    for panel in (image[:, :320], image[:, 320:]):
        assert colour_pixels(panel, viz.plots.TRAINING_COLOR).sum() > 5 * 20  # five dots and the legend's
        assert colour_pixels(panel, viz.plots.VALIDATION_COLOR).sum() > 100  # the line
    training_only = viz.plot_history({"loss": HISTORY["loss"]}, backend="pillow", size=(400, 300))
    assert colour_pixels(training_only, viz.plots.TRAINING_COLOR).any()
    assert not colour_pixels(training_only, viz.plots.VALIDATION_COLOR).any()


def test_plot_history_with_matplotlib_has_the_requested_size():
    pytest.importorskip("matplotlib")
    image = viz.plot_history(HISTORY, backend="matplotlib", size=(640, 360))
    assert image.shape == (360, 640, 3) and image.dtype == np.uint8
    assert colour_pixels(image, viz.plots.VALIDATION_COLOR).any()


def test_plot_history_default_metrics_and_errors():
    assert viz.plots.history_metrics(HISTORY) == ["loss", "accuracy"]
    assert viz.plots.history_metrics({"loss": [1], "val_loss": [1], "mae": [1]}) == ["loss", "mae"]
    with pytest.raises(ValueError, match=r"metrics.*'auc'.*'loss'"):
        viz.plot_history(HISTORY, metrics=["auc"], backend="pillow")
    with pytest.raises(ValueError, match=r"backend.*'svg'"):
        viz.plot_history(HISTORY, backend="svg")


# --------------------------------------------------------------------------- everything at once


def test_visualize_writes_every_picture_of_a_model_and_an_image_file(tmp_path, rng):
    model = mnist_model(seed=8)
    pixels = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    Image.fromarray(pixels, "L").save(tmp_path / "digit.png")
    out = tmp_path / "out"
    paths = viz.visualize(model, str(tmp_path / "digit.png"), str(out), n_patterns=4, iterations=2)
    names = conv_names(model)
    assert [os.path.relpath(p, out) for p in paths] == (
        [os.path.join("activations", f"{layer.name}.png") for layer in model.layers
         if isinstance(layer, (layers.Conv2D, layers.MaxPooling2D))]
        + [f"filter_weights_{names[0]}.png", f"filter_patterns_{names[0]}.png", f"grad_cam_{names[-1]}.png"]
    )
    # the model saw the pixels divided by 255 (it has no Rescaling layer of its own)
    grid = viz.activation_grid(run_layer_by_layer(model, pixels[:, :, None] / np.float32(255))[names[1]])
    written = np.asarray(Image.open(out / "activations" / f"{names[1]}.png"))
    expected = enlarged_reference(grid, 11, 11, 64, 16, 6)  # 11 x 11 maps, 6 times: 66 pixels
    np.testing.assert_array_equal(written[-expected.shape[0]:, :expected.shape[1]], expected)
    assert Image.open(out / f"grad_cam_{names[-1]}.png").size == (224, 224)  # the 28 x 28 digit, 8 times
    assert Image.open(out / f"filter_weights_{names[0]}.png").size == (8 * 48 + 7 * 6, 4 * 48 + 3 * 6)


def test_the_command_line_loads_the_model_and_prints_the_written_paths(tmp_path, capsys, rng):
    model = mnist_model(seed=9)
    model.save(tmp_path / "model.keras")
    Image.fromarray(rng.integers(0, 256, (28, 28)).astype(np.uint8), "L").save(tmp_path / "digit.png")
    code = convlab.__main__.main(["visualize", str(tmp_path / "model.keras"), str(tmp_path / "digit.png"),
                                  "--out", str(tmp_path / "out"), "--patterns", "2", "--iterations", "1"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 8 and all(os.path.isfile(p) for p in printed)
    # the written Grad-CAM is the one of the saved model, computed again here from the original
    image = np.asarray(Image.open(tmp_path / "digit.png"), dtype=np.float32)[None, :, :, None] / 255
    heatmap = viz.grad_cam(model, image, conv_names(model)[-1])
    expected = viz.overlay_heatmap(np.asarray(Image.open(tmp_path / "digit.png")), heatmap)
    written = np.asarray(Image.open([p for p in printed if "grad_cam" in p][0]).convert("RGB"))
    np.testing.assert_array_equal(written, np.kron(expected, np.ones((8, 8, 1), np.uint8)))
