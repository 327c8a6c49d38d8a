"""The float64 reference (tests/reference.py) is itself right: it agrees with PyTorch CPU.

PyTorch works in NCHW with OIHW kernels and symmetric padding, so each test converts
layouts and emulates Keras padding with torch.nn.functional.pad (asymmetric "same"
padding, cropping of transposed-conv outputs). The padding amounts used here follow
TensorFlow's documented rule, written again in this file, while the reference computes
transposed convs the way Keras' JAX backend does: two derivations that must meet.
The output sizes themselves are pinned to numbers printed in the Keras model summaries of
the book models (Deep Learning with Python, 2nd edition) and in TensorFlow's docs.
"""

import numpy as np
import pytest

import reference

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.usefixtures("single_threaded_torch")


# --------------------------------------------------------------------------- helpers


def to_torch(array_nhwc):
    return torch.from_numpy(np.ascontiguousarray(array_nhwc, dtype=np.float64)).permute(0, 3, 1, 2)


def to_numpy(tensor_nchw):
    return tensor_nchw.detach().permute(0, 2, 3, 1).contiguous().numpy()


def conv_kernel_to_torch(kernel):
    """Keras Conv2D (kh, kw, cin, cout) -> torch conv2d weight (cout, cin, kh, kw)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def transpose_kernel_to_torch(kernel):
    """Keras Conv2DTranspose (kh, kw, cout, cin) -> torch conv_transpose2d weight (cin, cout, kh, kw)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def depthwise_kernel_to_torch(kernel):
    """Keras DepthwiseConv2D (kh, kw, cin, dm) -> grouped torch weight (cin*dm, 1, kh, kw).

    Flattening (cin, dm) row-major makes output channel c*dm + m, Keras' order."""
    kh, kw, cin, dm = kernel.shape
    return torch.from_numpy(np.ascontiguousarray(kernel.reshape(kh, kw, cin * dm).transpose(2, 0, 1)[:, None]))


def tf_same_padding(size, kernel, stride, dilation=1):
    """TensorFlow's "same": out = ceil(size/stride); the smaller half of the padding first."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def torch_padding(padding, hw, kernel_hw, strides, dilation):
    """(left, right, top, bottom) for F.pad from a Keras padding argument."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        top, bottom = tf_same_padding(hw[0], kernel_hw[0], strides[0], dilation[0])
        left, right = tf_same_padding(hw[1], kernel_hw[1], strides[1], dilation[1])
        return (left, right, top, bottom)
    (top, bottom), (left, right) = padding
    return (left, right, top, bottom)


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def assert_close(actual, expected, rtol=1e-12):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(np.max(np.abs(expected), initial=0.0), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def leaf(array):
    return array.clone().requires_grad_(True)


# --------------------------------------------------------------------------- output sizes


@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [
        (28, 3, 1, "valid", 26),  # MNIST convnet: (None, 26, 26, 32)
        (13, 3, 1, "valid", 11),  # MNIST convnet after 2x2 pooling: (None, 11, 11, 64)
        (5, 3, 1, "valid", 3),  # MNIST convnet: (None, 3, 3, 128)
        (180, 3, 1, "valid", 178),  # cats vs dogs convnet: (None, 178, 178, 32)
        (89, 3, 1, "valid", 87),
        (43, 3, 1, "valid", 41),
        (20, 3, 1, "valid", 18),
        (9, 3, 1, "valid", 7),
        (200, 3, 2, "same", 100),  # segmentation net: Conv2D(64, 3, strides=2, padding="same")
        (100, 3, 1, "same", 100),
        (224, 3, 1, "same", 224),  # VGG16 block1_conv1
        (299, 3, 2, "valid", 149),  # Xception block1_conv1
        (149, 3, 1, "valid", 147),  # Xception block1_conv2
        (13, 6, 5, "same", 3),  # TensorFlow docs' padding example
    ],
)
def test_conv_output_length_matches_published_keras_summaries(size, kernel, stride, padding, expected):
    assert reference.conv_output_length(size, kernel, stride, padding)[0] == expected


@pytest.mark.parametrize(
    "size, pool, stride, padding, expected",
    [
        (26, 2, 2, "valid", 13),  # MNIST convnet MaxPooling2D(2)
        (11, 2, 2, "valid", 5),
        (178, 2, 2, "valid", 89),  # cats vs dogs convnet
        (87, 2, 2, "valid", 43),
        (41, 2, 2, "valid", 20),
        (18, 2, 2, "valid", 9),
        (180, 3, 2, "same", 90),  # mini Xception: MaxPooling2D(3, strides=2, padding="same")
        (45, 3, 2, "same", 23),
        (224, 2, 2, "valid", 112),  # VGG16 block1_pool
        (14, 2, 2, "valid", 7),  # VGG16 block5_pool
        (147, 3, 2, "same", 74),  # Xception block2_pool
    ],
)
def test_pool_output_length_matches_published_keras_summaries(size, pool, stride, padding, expected):
    assert reference.conv_output_length(size, pool, stride, padding)[0] == expected


def test_tensorflow_docs_same_padding_example_puts_the_smaller_half_first():
    # TF docs: in_width 13, filter 6, stride 5 -> pad_along_width 3, pad_left 1, pad_right 2.
    assert reference.conv_output_length(13, 6, 5, "same") == (3, (1, 2))


def test_resnet50_stem_with_explicit_padding_gives_keras_sizes():
    # ResNet50: ZeroPadding2D(3) + Conv2D(64, 7, strides=2) -> 112; ZeroPadding2D(1) + MaxPooling2D(3, 2) -> 56.
    assert reference.conv_output_length(224, 7, 2, (3, 3))[0] == 112
    assert reference.conv_output_length(112, 3, 2, (1, 1))[0] == 56


@pytest.mark.parametrize(
    "size, kernel, stride, padding, output_padding, expected",
    [
        (25, 3, 2, "same", None, 50),  # segmentation net: Conv2DTranspose(256, 3, strides=2, padding="same")
        (50, 3, 2, "same", None, 100),
        (100, 3, 2, "same", None, 200),
        (25, 3, 1, "same", None, 25),
        (4, 3, 2, "valid", None, 9),  # (4 - 1) * 2 + 3
        (4, 2, 3, "valid", None, 12),  # stride > kernel: 4 * 3
        (4, 3, 2, "same", 1, 8),  # (4 - 1) * 2 + 3 - 2 * 1 + 1
        (4, 3, 2, "valid", 1, 10),
    ],
)
def test_deconv_output_length_matches_keras(size, kernel, stride, padding, output_padding, expected):
    assert reference.deconv_output_length(size, kernel, padding, output_padding, stride) == expected


# --------------------------------------------------------------------------- conv2d

CONV_CASES = [
    # (N, H, W, cin, cout, (kh, kw), strides, padding, dilation)
    (2, 7, 6, 3, 4, (3, 3), 1, "valid", 1),
    (1, 9, 8, 2, 3, (3, 2), 2, "same", 1),
    (2, 10, 7, 3, 2, (3, 3), 3, "same", 1),
    (1, 8, 9, 1, 1, (2, 4), (2, 3), "same", 1),
    (2, 9, 9, 2, 3, (3, 3), 1, "same", 2),
    (1, 11, 10, 2, 2, (3, 2), 2, "valid", 2),
    (2, 6, 7, 3, 2, (3, 3), 2, ((1, 2), (0, 3)), 1),
    (1, 5, 5, 4, 5, (1, 1), 1, "valid", 1),
    (1, 5, 6, 2, 2, (5, 5), 1, "same", 1),
]


@pytest.mark.parametrize("n, h, w, cin, cout, ksize, strides, padding, dilation", CONV_CASES)
def test_conv2d_reference_matches_torch(rng, n, h, w, cin, cout, ksize, strides, padding, dilation):
    x = rng.standard_normal((n, h, w, cin))
    kernel = rng.standard_normal((*ksize, cin, cout))
    bias = rng.standard_normal(cout)
    y = reference.conv2d_forward(x, kernel, bias, strides, padding, dilation)

    xt, wt = leaf(to_torch(x)), leaf(conv_kernel_to_torch(kernel))
    bt = leaf(torch.from_numpy(bias))
    pads = torch_padding(padding, (h, w), ksize, pair(strides), pair(dilation))
    yt = F.conv2d(F.pad(xt, pads), wt, bt, stride=pair(strides), dilation=pair(dilation))
    assert_close(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(to_torch(grad_y))
    assert_close(reference.conv2d_backward_input(grad_y, kernel, x.shape, strides, padding, dilation), to_numpy(xt.grad))
    expected_kernel_grad = wt.grad.permute(2, 3, 1, 0).numpy()
    assert_close(reference.conv2d_backward_kernel(x, grad_y, kernel.shape, strides, padding, dilation), expected_kernel_grad)
    assert_close(reference.conv2d_backward_bias(grad_y), bt.grad.numpy())


# --------------------------------------------------------------------------- conv2d_transpose

TRANSPOSE_CASES = [
    # (N, H, W, cin, cout, (kh, kw), strides, padding, output_padding, dilation)
    (2, 4, 5, 3, 2, (3, 3), 2, "same", None, 1),
    (1, 5, 4, 2, 3, (3, 3), 2, "valid", None, 1),
    (1, 3, 4, 2, 2, (2, 2), 3, "valid", None, 1),  # stride > kernel: trailing zeros
    (2, 4, 3, 2, 2, (4, 3), 2, "same", None, 1),
    (1, 4, 4, 3, 2, (3, 3), 3, "same", None, 1),
    (1, 4, 5, 2, 2, (3, 3), 2, "same", 1, 1),
    (1, 3, 4, 2, 3, (3, 2), (2, 3), "valid", (1, 2), 1),
    (1, 4, 3, 1, 1, (4, 4), 2, "same", 0, 1),  # even kernel with output_padding 0
    (1, 3, 3, 2, 2, (2, 2), 4, "same", 3, 1),  # output_padding > kernel
    (2, 4, 4, 2, 2, (3, 3), 1, "same", None, 2),
    (1, 3, 4, 2, 2, (3, 2), 2, "valid", None, 2),
]


@pytest.mark.parametrize("n, h, w, cin, cout, ksize, strides, padding, output_padding, dilation", TRANSPOSE_CASES)
def test_conv2d_transpose_reference_matches_torch(rng, n, h, w, cin, cout, ksize, strides, padding, output_padding, dilation):
    x = rng.standard_normal((n, h, w, cin))
    kernel = rng.standard_normal((*ksize, cout, cin))
    bias = rng.standard_normal(cout)
    y = reference.conv2d_transpose_forward(x, kernel, bias, strides, padding, output_padding, dilation)

    # torch gives the full transposed conv ((in - 1) * stride + k_eff per axis). Keras' output
    # is the window of it that starts at TF's "before" padding of the conv it inverts; rows
    # past the end of the full output are zero.
    strides, dilation = pair(strides), pair(dilation)
    out_hw = reference.conv2d_transpose_output_hw((h, w), ksize, strides, padding, output_padding, dilation)
    assert y.shape == (n, *out_hw, cout)
    crops = []
    for axis in range(2):
        k_eff = (ksize[axis] - 1) * dilation[axis] + 1
        full = ((h, w)[axis] - 1) * strides[axis] + k_eff
        before = max(full - out_hw[axis], 0) // 2 if padding == "same" else 0
        crops.append((-before, out_hw[axis] - (full - before)))
    xt, wt = leaf(to_torch(x)), leaf(transpose_kernel_to_torch(kernel))
    bt = leaf(torch.from_numpy(bias))
    full_output = F.conv_transpose2d(xt, wt, None, stride=strides, dilation=dilation)
    yt = F.pad(full_output, (*crops[1], *crops[0])) + bt[:, None, None]
    assert_close(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(to_torch(grad_y))
    assert_close(
        reference.conv2d_transpose_backward_input(grad_y, kernel, x.shape, strides, padding, output_padding, dilation),
        to_numpy(xt.grad),
    )
    assert_close(
        reference.conv2d_transpose_backward_kernel(x, grad_y, kernel.shape, strides, padding, output_padding, dilation),
        wt.grad.permute(2, 3, 1, 0).numpy(),
    )


def test_conv2d_transpose_equals_gradient_of_the_conv_it_inverts(rng):
    # TensorFlow defines conv2d_transpose as the input gradient of conv2d from the
    # transposed output size back to the input size; Keras "same" pairs with TF "same".
    x = rng.standard_normal((2, 5, 4, 3))
    kernel = rng.standard_normal((3, 3, 2, 3))
    y = reference.conv2d_transpose_forward(x, kernel, None, 2, "same")
    assert y.shape == (2, 10, 8, 2)
    as_gradient = reference.conv2d_backward_input(x, kernel, y.shape, 2, "same")
    assert_close(y, as_gradient)


# --------------------------------------------------------------------------- depthwise and separable

DEPTHWISE_CASES = [
    # (N, H, W, cin, dm, (kh, kw), strides, padding, dilation)
    (2, 7, 6, 3, 1, (3, 3), 1, "valid", 1),
    (1, 8, 9, 2, 2, (3, 3), 2, "same", 1),
    (2, 9, 7, 3, 3, (3, 2), 3, "same", 1),
    (1, 9, 9, 2, 2, (3, 3), 1, "same", 2),
    (1, 7, 8, 1, 3, (2, 3), (1, 2), ((2, 0), (1, 1)), 1),
]


@pytest.mark.parametrize("n, h, w, cin, dm, ksize, strides, padding, dilation", DEPTHWISE_CASES)
def test_depthwise_conv2d_reference_matches_torch_grouped_conv(rng, n, h, w, cin, dm, ksize, strides, padding, dilation):
    x = rng.standard_normal((n, h, w, cin))
    kernel = rng.standard_normal((*ksize, cin, dm))
    bias = rng.standard_normal(cin * dm)
    y = reference.depthwise_conv2d_forward(x, kernel, bias, strides, padding, dilation)

    xt, wt = leaf(to_torch(x)), leaf(depthwise_kernel_to_torch(kernel))
    pads = torch_padding(padding, (h, w), ksize, pair(strides), pair(dilation))
    yt = F.conv2d(F.pad(xt, pads), wt, torch.from_numpy(bias), stride=pair(strides), dilation=pair(dilation), groups=cin)
    assert_close(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(to_torch(grad_y))
    assert_close(reference.depthwise_conv2d_backward_input(grad_y, kernel, x.shape, strides, padding, dilation), to_numpy(xt.grad))
    expected_kernel_grad = wt.grad[:, 0].permute(1, 2, 0).reshape(*ksize, cin, dm).numpy()
    assert_close(reference.depthwise_conv2d_backward_kernel(x, grad_y, kernel.shape, strides, padding, dilation), expected_kernel_grad)


@pytest.mark.parametrize("strides, padding, dilation", [(1, "valid", 1), (2, "same", 1), (1, "same", 2)])
def test_separable_conv2d_reference_matches_torch_depthwise_then_pointwise(rng, strides, padding, dilation):
    n, h, w, cin, dm, cout = 2, 7, 8, 3, 2, 4
    x = rng.standard_normal((n, h, w, cin))
    depthwise_kernel = rng.standard_normal((3, 3, cin, dm))
    pointwise_kernel = rng.standard_normal((1, 1, cin * dm, cout))
    bias = rng.standard_normal(cout)
    y = reference.separable_conv2d_forward(x, depthwise_kernel, pointwise_kernel, bias, strides, padding, dilation)

    pads = torch_padding(padding, (h, w), (3, 3), pair(strides), pair(dilation))
    depthwise = F.conv2d(F.pad(to_torch(x), pads), depthwise_kernel_to_torch(depthwise_kernel), stride=strides, dilation=dilation, groups=cin)
    yt = F.conv2d(depthwise, conv_kernel_to_torch(pointwise_kernel), torch.from_numpy(bias))
    assert_close(y, to_numpy(yt))


# --------------------------------------------------------------------------- pooling

POOL_CASES = [
    # (N, H, W, C, pool_size, strides, padding)
    (2, 6, 8, 3, 2, None, "valid"),
    (1, 7, 7, 2, 3, 2, "same"),
    (2, 9, 8, 2, 3, 3, "same"),
    (1, 7, 9, 3, (2, 3), (1, 2), "same"),
    (1, 8, 7, 1, 3, 1, "valid"),
    (1, 5, 6, 2, 2, 2, "same"),
    (2, 6, 6, 2, 3, 2, ((1, 1), (1, 0))),
]


def torch_pool_padding(padding, hw, pool, strides):
    return torch_padding(padding, hw, pool, strides, (1, 1))


@pytest.mark.parametrize("n, h, w, c, pool_size, strides, padding", POOL_CASES)
def test_max_pool2d_reference_matches_torch(rng, n, h, w, c, pool_size, strides, padding):
    x = rng.standard_normal((n, h, w, c))
    pool = pair(pool_size)
    stride = pool if strides is None else pair(strides)
    y = reference.max_pool2d_forward(x, pool_size, strides, padding)

    xt = leaf(to_torch(x))
    padded = F.pad(xt, torch_pool_padding(padding, (h, w), pool, stride), value=-np.inf)
    yt = F.max_pool2d(padded, pool, stride)
    assert_close(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(to_torch(grad_y))
    assert_close(reference.max_pool2d_backward(x, grad_y, pool_size, strides, padding), to_numpy(xt.grad))


def test_max_pool2d_reference_gives_ties_to_the_first_real_cell_like_torch():
    # A constant image: every cell of every window ties. 3x3 windows, stride 1, "same":
    # the first real cell of the window centred on (i, j) is (max(i-1, 0), max(j-1, 0)).
    h, w = 5, 4
    grad_y = np.arange(1.0, h * w + 1).reshape(1, h, w, 1)
    grad_x = reference.max_pool2d_backward(np.ones((1, h, w, 1)), grad_y, 3, 1, "same")
    expected = np.zeros((1, h, w, 1))
    for i in range(h):
        for j in range(w):
            expected[0, max(i - 1, 0), max(j - 1, 0), 0] += grad_y[0, i, j, 0]
    assert_close(grad_x, expected)
    # torch's CPU max pooling keeps the first maximum too (strict > comparison).
    xt = leaf(torch.ones(1, 1, h, w, dtype=torch.float64))
    F.max_pool2d(F.pad(xt, (1, 1, 1, 1), value=-np.inf), 3, 1).backward(to_torch(grad_y))
    assert_close(grad_x, to_numpy(xt.grad))


def test_max_pool2d_reference_propagates_nan_and_routes_its_gradient_to_it():
    x = np.array([[1.0, 5.0, 2.0, 2.0], [np.nan, 3.0, 2.0, 2.0]]).reshape(1, 2, 4, 1)
    y = reference.max_pool2d_forward(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 1, 0] == 2.0
    grad_x = reference.max_pool2d_backward(x, np.array([10.0, 20.0]).reshape(1, 1, 2, 1), 2)
    expected = np.array([[0.0, 0.0, 20.0, 0.0], [10.0, 0.0, 0.0, 0.0]]).reshape(1, 2, 4, 1)
    np.testing.assert_array_equal(grad_x, expected)


@pytest.mark.parametrize("n, h, w, c, pool_size, strides, padding", POOL_CASES)
def test_avg_pool2d_reference_matches_torch_excluding_padding(rng, n, h, w, c, pool_size, strides, padding):
    x = rng.standard_normal((n, h, w, c))
    pool = pair(pool_size)
    stride = pool if strides is None else pair(strides)
    y = reference.avg_pool2d_forward(x, pool_size, strides, padding)

    # count_include_pad=False with asymmetric padding: average of the zero-padded input
    # divided by the average of a zero-padded ones image (the fraction of real cells).
    pads = torch_pool_padding(padding, (h, w), pool, stride)
    xt = leaf(to_torch(x))
    sums = F.avg_pool2d(F.pad(xt, pads), pool, stride)
    fraction = F.avg_pool2d(F.pad(torch.ones(1, 1, h, w, dtype=torch.float64), pads), pool, stride)
    yt = sums / fraction
    assert_close(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(to_torch(grad_y))
    assert_close(reference.avg_pool2d_backward(grad_y, x.shape, pool_size, strides, padding), to_numpy(xt.grad))


def test_avg_pool2d_same_padding_divides_by_real_cells_like_torch_symmetric_case(rng):
    # With symmetric padding torch's own count_include_pad=False applies directly.
    x = rng.standard_normal((2, 7, 7, 3))
    y = reference.avg_pool2d_forward(x, 3, 1, "same")
    yt = F.avg_pool2d(to_torch(x), 3, 1, padding=1, count_include_pad=False)
    assert_close(y, to_numpy(yt))


def test_global_avg_pool2d_reference_matches_torch(rng):
    x = rng.standard_normal((3, 5, 4, 6))
    xt = leaf(to_torch(x))
    yt = F.adaptive_avg_pool2d(xt, 1)[:, :, 0, 0]
    assert_close(reference.global_avg_pool2d_forward(x), yt.detach().numpy())
    grad_y = rng.standard_normal((3, 6))
    yt.backward(torch.from_numpy(grad_y))
    assert_close(reference.global_avg_pool2d_backward(grad_y, x.shape), to_numpy(xt.grad))


# --------------------------------------------------------------------------- batch normalization


def to_channels_first(array):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 1)))


def from_channels_first(tensor):
    return np.moveaxis(tensor.detach().numpy(), 1, -1)


@pytest.mark.parametrize("shape", [(4, 5, 3, 3), (6, 4), (3, 5, 2)])
@pytest.mark.parametrize("scale, center", [(True, True), (False, False)])
def test_batch_norm_training_reference_matches_torch(rng, shape, scale, center):
    channels = shape[-1]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    gamma = rng.standard_normal(channels) if scale else None
    beta = rng.standard_normal(channels) if center else None
    moving_mean = rng.standard_normal(channels)
    moving_variance = rng.uniform(0.5, 2.0, channels)
    momentum, epsilon = 0.9, 1e-3
    y, mean, variance, new_mean, new_variance = reference.batch_norm_forward_training(
        x, gamma, beta, moving_mean, moving_variance, momentum, epsilon
    )

    xt = leaf(to_channels_first(x))
    gt = leaf(torch.from_numpy(gamma)) if scale else None
    bt = leaf(torch.from_numpy(beta)) if center else None
    running_mean = torch.from_numpy(moving_mean.copy())
    running_var = torch.from_numpy(moving_variance.copy())
    # torch's momentum weighs the new statistic: torch momentum = 1 - Keras momentum.
    yt = F.batch_norm(xt, running_mean, running_var, gt, bt, training=True, momentum=1 - momentum, eps=epsilon)
    assert_close(y, from_channels_first(yt))
    reduce_dims = [d for d in range(xt.dim()) if d != 1]
    batch_var, batch_mean = torch.var_mean(xt.detach(), dim=reduce_dims, correction=0)
    assert_close(mean, batch_mean.numpy())
    assert_close(variance, batch_var.numpy())
    assert_close(new_mean, running_mean.numpy())
    # torch updates its running variance with the unbiased variance; Keras 3 uses the biased one.
    assert_close(new_variance, moving_variance * momentum + batch_var.numpy() * (1 - momentum))

    grad_y = rng.standard_normal(shape)
    yt.backward(to_channels_first(grad_y))
    grad_x, grad_gamma, grad_beta = reference.batch_norm_backward(grad_y, x, gamma, mean, variance, epsilon)
    assert_close(grad_x, from_channels_first(xt.grad))
    if scale:
        assert_close(grad_gamma, gt.grad.numpy())
    if center:
        assert_close(grad_beta, bt.grad.numpy())


def test_batch_norm_inference_reference_matches_torch(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    gamma, beta = rng.standard_normal(2), rng.standard_normal(2)
    moving_mean, moving_variance = rng.standard_normal(2), rng.uniform(0.5, 2.0, 2)
    y = reference.batch_norm_forward_inference(x, gamma, beta, moving_mean, moving_variance, 1e-3)
    yt = F.batch_norm(
        to_channels_first(x), torch.from_numpy(moving_mean), torch.from_numpy(moving_variance),
        torch.from_numpy(gamma), torch.from_numpy(beta), training=False, eps=1e-3,
    )
    assert_close(y, from_channels_first(yt))
