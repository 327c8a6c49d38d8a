"""The kernels agree with PyTorch CPU directly on Keras "same" padding with strides 1 to 3.

"same" is where frameworks differ (TensorFlow puts the smaller half of an odd padding
first, PyTorch has no asymmetric padding at all), so these tests compare output sizes
and values with torch, emulating TF's rule with torch.nn.functional.pad. Gradients are
compared with torch's autograd through the same emulation.

Every test runs on every `device` (tests/devices.py): the kernels get device arrays
(`on(...)`, device.array) and their results come back through device.numpy; torch runs on
the CPU, on the numpy originals.
"""

import numpy as np
import pytest

from convlab import kernels
from convlab.testing import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.usefixtures("single_threaded_torch")

SIZES = [5, 6, 7]  # odd and even, so the total padding is odd for some strides and kernels
STRIDES = [1, 2, 3]


def to_torch(array_nhwc):
    return torch.from_numpy(np.ascontiguousarray(array_nhwc)).permute(0, 3, 1, 2).requires_grad_(True)


def to_numpy(tensor_nchw):
    return tensor_nchw.detach().permute(0, 2, 3, 1).contiguous().numpy()


def same_pads(size, kernel, stride):
    """TensorFlow "same": out = ceil(size / stride), the smaller half of the padding before."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_pads_2d(h, w, kh, kw, stride):
    top, bottom = same_pads(h, kh, stride)
    left, right = same_pads(w, kw, stride)
    return (left, right, top, bottom)  # F.pad order: last axis first


def assert_matches(actual, expected, rtol=1e-10):
    assert actual.shape == expected.shape, f"shape {actual.shape}, torch gives {expected.shape}"
    assert_close(actual, expected, rtol=rtol)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kernel_size", [(1, 1), (2, 2), (3, 3), (4, 3), (5, 5)])
def test_conv2d_same_padding_matches_torch(device, rng, stride, size, kernel_size):
    kh, kw = kernel_size
    x = rng.standard_normal((2, size, size + 1, 3))
    kernel = rng.standard_normal((kh, kw, 3, 4))
    on = device.array
    y = device.numpy(kernels.conv2d_forward(on(x), on(kernel), None, stride, "same"))

    xt, wt = to_torch(x), torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    yt = F.conv2d(F.pad(xt, same_pads_2d(size, size + 1, kh, kw, stride)), wt, stride=stride)
    assert y.shape[1:3] == (-(-size // stride), -(-(size + 1) // stride))
    assert_matches(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(grad_y).permute(0, 3, 1, 2))
    assert_matches(device.numpy(kernels.conv2d_backward_input(on(grad_y), on(kernel), x.shape, stride, "same")), to_numpy(xt.grad))
    assert_matches(device.numpy(kernels.conv2d_backward_kernel(on(x), on(grad_y), kernel.shape, stride, "same")), wt.grad.permute(2, 3, 1, 0).numpy())


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", [3, 4])
@pytest.mark.parametrize("kernel_size", [(1, 1), (2, 2), (3, 3), (4, 3), (5, 5)])
def test_conv2d_transpose_same_padding_matches_torch(device, rng, stride, size, kernel_size):
    kh, kw = kernel_size
    x = rng.standard_normal((2, size, size + 1, 3))
    kernel = rng.standard_normal((kh, kw, 2, 3))  # (kh, kw, cout, cin)
    on = device.array
    y = device.numpy(kernels.conv2d_transpose_forward(on(x), on(kernel), None, stride, "same"))
    # Keras "same" without output_padding: output = input * stride.
    assert y.shape == (2, size * stride, (size + 1) * stride, 2)

    # torch's full transposed conv is (in - 1) * stride + k long; Keras keeps the window
    # of it that starts after the "before" padding of the conv it is the gradient of.
    xt = to_torch(x)
    wt = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    full = F.conv_transpose2d(xt, wt, stride=stride)
    crops = []
    for in_size, k, out in ((size, kh, y.shape[1]), (size + 1, kw, y.shape[2])):
        full_size = (in_size - 1) * stride + k
        before = max(full_size - out, 0) // 2
        crops.append((-before, out - (full_size - before)))
    yt = F.pad(full, (*crops[1], *crops[0]))
    assert_matches(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(grad_y).permute(0, 3, 1, 2))
    assert_matches(device.numpy(kernels.conv2d_transpose_backward_input(on(grad_y), on(kernel), x.shape, stride, "same")), to_numpy(xt.grad))
    assert_matches(device.numpy(kernels.conv2d_transpose_backward_kernel(on(x), on(grad_y), kernel.shape, stride, "same")), wt.grad.permute(2, 3, 1, 0).numpy())


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kernel_size, depth_multiplier", [((2, 2), 1), ((3, 3), 2), ((5, 4), 3)])
def test_depthwise_conv2d_same_padding_matches_torch_grouped_conv(device, rng, stride, size, kernel_size, depth_multiplier):
    kh, kw = kernel_size
    cin, dm = 3, depth_multiplier
    x = rng.standard_normal((2, size, size + 1, cin))
    kernel = rng.standard_normal((kh, kw, cin, dm))
    on = device.array
    y = device.numpy(kernels.depthwise_conv2d_forward(on(x), on(kernel), None, stride, "same"))

    # groups=cin with weight (cin*dm, 1, kh, kw): output channel c*dm + m reads input channel c.
    xt = to_torch(x)
    wt = torch.from_numpy(kernel.reshape(kh, kw, cin * dm).transpose(2, 0, 1)[:, None].copy()).requires_grad_(True)
    yt = F.conv2d(F.pad(xt, same_pads_2d(size, size + 1, kh, kw, stride)), wt, stride=stride, groups=cin)
    assert_matches(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(grad_y).permute(0, 3, 1, 2))
    assert_matches(device.numpy(kernels.depthwise_conv2d_backward_input(on(grad_y), on(kernel), x.shape, stride, "same")), to_numpy(xt.grad))
    expected_kernel_grad = wt.grad[:, 0].permute(1, 2, 0).reshape(kh, kw, cin, dm).numpy()
    assert_matches(device.numpy(kernels.depthwise_conv2d_backward_kernel(on(x), on(grad_y), kernel.shape, stride, "same")), expected_kernel_grad)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pool_size", [2, 3, (3, 2)])
def test_max_pool2d_same_padding_matches_torch(device, rng, stride, size, pool_size):
    ph, pw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    x = rng.standard_normal((2, size, size + 1, 3))
    on = device.array
    y = device.numpy(kernels.max_pool2d_forward(on(x), pool_size, stride, "same"))

    xt = to_torch(x)
    yt = F.max_pool2d(F.pad(xt, same_pads_2d(size, size + 1, ph, pw, stride), value=-np.inf), (ph, pw), stride)
    assert_matches(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(grad_y).permute(0, 3, 1, 2))
    assert_matches(device.numpy(kernels.max_pool2d_backward(on(x), on(grad_y), pool_size, stride, "same")), to_numpy(xt.grad))


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pool_size", [2, 3, (3, 2)])
def test_avg_pool2d_same_padding_matches_torch_without_counting_padding(device, rng, stride, size, pool_size):
    ph, pw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    x = rng.standard_normal((2, size, size + 1, 3))
    on = device.array
    y = device.numpy(kernels.avg_pool2d_forward(on(x), pool_size, stride, "same"))

    # Average of the zero-padded input over the average of a zero-padded ones image:
    # count_include_pad=False for padding torch cannot express (asymmetric).
    pads = same_pads_2d(size, size + 1, ph, pw, stride)
    xt = to_torch(x)
    ones = torch.ones(1, 1, size, size + 1, dtype=torch.float64)
    yt = F.avg_pool2d(F.pad(xt, pads), (ph, pw), stride) / F.avg_pool2d(F.pad(ones, pads), (ph, pw), stride)
    assert_matches(y, to_numpy(yt))

    grad_y = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(grad_y).permute(0, 3, 1, 2))
    assert_matches(device.numpy(kernels.avg_pool2d_backward(on(grad_y), x.shape, pool_size, stride, "same")), to_numpy(xt.grad))


def test_avg_pool2d_3x3_stride1_same_matches_torch_count_include_pad_false(device, rng):
    # The symmetric case, where torch's own flag applies without emulation.
    x = rng.standard_normal((2, 6, 7, 3))
    expected = F.avg_pool2d(to_torch(x), 3, 1, padding=1, count_include_pad=False)
    assert_matches(device.numpy(kernels.avg_pool2d_forward(device.array(x), 3, 1, "same")), to_numpy(expected))


@pytest.mark.parametrize("stride", STRIDES)
def test_float32_conv2d_same_padding_matches_torch(device, rng, stride):
    x = rng.standard_normal((2, 9, 8, 5)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 5, 6)).astype(np.float32)
    y = kernels.conv2d_forward(*device.arrays(x, kernel), None, stride, "same")
    yt = F.conv2d(F.pad(to_torch(x), same_pads_2d(9, 8, 3, 3, stride)), torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), stride=stride)
    assert y.dtype == np.float32
    y = device.numpy(y)
    assert_matches(y, to_numpy(yt), rtol=1e-5)
