"""An independent float64 reference for every convlab kernel, written for clarity.

Nothing here imports convlab. Every function mirrors the signature of its counterpart in
`convlab.kernels`, converts its inputs to float64 and computes with plain numpy: a loop
over the kernel taps, each tap one strided slice of the (padded) input and one matrix
product. Backward passes are the adjoints of those loops (the same slices, scatter-added
instead of gathered), so they can be read line by line against the forward.

The padding arithmetic is written out again here (not taken from csrc/common/geometry.h):

  "valid"   no padding; out = floor((in - k_eff) / stride) + 1
  "same"    out = ceil(in / stride); total = max((out - 1) * stride + k_eff - in, 0),
            the smaller half (total // 2) before, the rest after          (TensorFlow)
  explicit  ((top, bottom), (left, right))
  k_eff = (k - 1) * dilation + 1 is the extent of a dilated kernel.

The transposed convolution follows Keras 3 literally: the output length is Keras'
`deconv_output_length`, and the values are computed the way Keras' JAX backend does it
(insert stride - 1 zeros between input pixels, pad with the amounts of
`_convert_conv_transpose_padding_args_from_keras_to_jax`, then a stride-1 correlation with
the spatially flipped kernel). The kernels compute it as the gradient of a forward conv
instead, so agreement between the two is a real check of the geometry.
"""

import numpy as np

# --------------------------------------------------------------------------- arguments


def pair(value):
    """An int or a pair of ints -> (int, int)."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    first, second = value
    return int(first), int(second)


def as_float64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


# --------------------------------------------------------------------------- geometry


def conv_output_length(in_size, kernel_size, stride, padding, dilation=1):
    """Output length and (before, after) padding of a forward window op along one axis.

    `padding` is "valid", "same" or an explicit (before, after) pair.
    """
    k_eff = (kernel_size - 1) * dilation + 1
    if padding == "same":
        out = -(-in_size // stride)  # ceil(in / stride)
        total = max((out - 1) * stride + k_eff - in_size, 0)
        return out, (total // 2, total - total // 2)
    if padding == "valid":
        before, after = 0, 0
    else:
        before, after = padding
    out = (in_size + before + after - k_eff) // stride + 1
    return out, (before, after)


def window_geometry(input_hw, kernel_hw, strides, padding, dilation_rate=1):
    """((OH, OW), ((top, bottom), (left, right))) of a forward window op on an NHWC input."""
    sh, sw = pair(strides)
    dh, dw = pair(dilation_rate)
    if isinstance(padding, str):
        pad_h = pad_w = padding
    else:
        pad_h, pad_w = (tuple(p) for p in padding)
    oh, pads_h = conv_output_length(input_hw[0], kernel_hw[0], sh, pad_h, dh)
    ow, pads_w = conv_output_length(input_hw[1], kernel_hw[1], sw, pad_w, dw)
    return (oh, ow), (pads_h, pads_w)


def deconv_output_length(in_size, kernel_size, padding, output_padding=None, stride=1, dilation=1):
    """Keras' deconv_output_length (keras/src/utils/conv_utils.py), for 'valid' and 'same'."""
    k_eff = (kernel_size - 1) * dilation + 1
    if output_padding is None:
        if padding == "valid":
            return in_size * stride + max(k_eff - stride, 0)
        return in_size * stride
    pad = k_eff // 2 if padding == "same" else 0
    return (in_size - 1) * stride + k_eff - 2 * pad + output_padding


def keras_transpose_padding(kernel_size, stride, dilation, padding, output_padding):
    """(left, right) zero padding of the stride-dilated input in Keras' JAX backend.

    After inserting stride - 1 zeros between input pixels and padding by (left, right), a
    stride-1 'valid' correlation with the flipped dilated kernel gives the Keras output.
    """
    k_eff = (kernel_size - 1) * dilation + 1
    if padding == "valid":
        if output_padding is None:
            output_padding = max(k_eff, stride) - k_eff
        return k_eff - 1, k_eff - 1 + output_padding
    if output_padding is None:
        pad_len = stride + k_eff - 2
    else:
        pad_len = k_eff + k_eff % 2 - 2 + output_padding
    left = min(pad_len // 2 + pad_len % 2, k_eff - 1)
    return left, pad_len - left


def _pad_nhwc(x, pads, value=0.0):
    (top, bottom), (left, right) = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _tap_slices(i, j, out_hw, strides, dilation_rate):
    """The (rows, cols) slices of the padded input that kernel tap (i, j) reads."""
    sh, sw = strides
    dh, dw = dilation_rate
    oh, ow = out_hw
    rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
    cols = slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)
    return rows, cols


# --------------------------------------------------------------------------- conv2d


def conv2d_forward(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1):
    """y[n, oh, ow, co] = bias[co] + sum_{i, j, ci} xpad[n, oh*sh + i*dh, ow*sw + j*dw, ci] * kernel[i, j, ci, co]"""
    x, kernel, bias = as_float64(x, kernel, bias)
    kh, kw, _, cout = kernel.shape
    out_hw, pads = window_geometry(x.shape[1:3], (kh, kw), strides, padding, dilation_rate)
    xpad = _pad_nhwc(x, pads)
    y = np.zeros((x.shape[0], *out_hw, cout))
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap_slices(i, j, out_hw, pair(strides), pair(dilation_rate))
            y += xpad[:, rows, cols, :] @ kernel[i, j]
    if bias is not None:
        y += bias
    return y


def conv2d_backward_input(grad_output, kernel, input_shape, strides=1, padding="valid", dilation_rate=1):
    """Adjoint of conv2d_forward in x: every tap scatter-adds grad_output @ kernel[i, j].T."""
    grad_output, kernel = as_float64(grad_output, kernel)
    kh, kw = kernel.shape[:2]
    out_hw, pads = window_geometry(input_shape[1:3], (kh, kw), strides, padding, dilation_rate)
    (top, bottom), (left, right) = pads
    n, h, w, c = input_shape
    grad_xpad = np.zeros((n, h + top + bottom, w + left + right, c))
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap_slices(i, j, out_hw, pair(strides), pair(dilation_rate))
            grad_xpad[:, rows, cols, :] += grad_output @ kernel[i, j].T
    return grad_xpad[:, top : top + h, left : left + w, :]


def conv2d_backward_kernel(x, grad_output, kernel_shape, strides=1, padding="valid", dilation_rate=1):
    """grad_kernel[i, j, ci, co] = sum_{n, oh, ow} xpad[n, tap (i, j) of (oh, ow), ci] * grad_output[n, oh, ow, co]"""
    x, grad_output = as_float64(x, grad_output)
    kh, kw = kernel_shape[:2]
    out_hw, pads = window_geometry(x.shape[1:3], (kh, kw), strides, padding, dilation_rate)
    xpad = _pad_nhwc(x, pads)
    grad_kernel = np.zeros(kernel_shape)
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap_slices(i, j, out_hw, pair(strides), pair(dilation_rate))
            grad_kernel[i, j] = np.einsum("nhwc,nhwo->co", xpad[:, rows, cols, :], grad_output)
    return grad_kernel


def conv2d_backward_bias(grad_output):
    """Sum of grad_output over every axis but the last (channels)."""
    grad_output = np.asarray(grad_output, dtype=np.float64)
    return grad_output.reshape(-1, grad_output.shape[-1]).sum(axis=0)


# --------------------------------------------------------------------------- conv2d_transpose


def conv2d_transpose_output_hw(input_hw, kernel_hw, strides=1, padding="valid", output_padding=None, dilation_rate=1):
    sh, sw = pair(strides)
    dh, dw = pair(dilation_rate)
    ph, pw = (None, None) if output_padding is None else pair(output_padding)
    return (
        deconv_output_length(input_hw[0], kernel_hw[0], padding, ph, sh, dh),
        deconv_output_length(input_hw[1], kernel_hw[1], padding, pw, sw, dw),
    )


def _transpose_as_correlation(input_shape, kernel_hw, strides, padding, output_padding, dilation_rate):
    """Shape of the zero-inserted, padded input and where the real input pixels sit in it."""
    sh, sw = pair(strides)
    dh, dw = pair(dilation_rate)
    ph, pw = (None, None) if output_padding is None else pair(output_padding)
    n, h, w, c = input_shape
    top, bottom = keras_transpose_padding(kernel_hw[0], sh, dh, padding, ph)
    left, right = keras_transpose_padding(kernel_hw[1], sw, dw, padding, pw)
    dilated_shape = (n, (h - 1) * sh + 1 + top + bottom, (w - 1) * sw + 1 + left + right, c)
    rows = slice(top, top + (h - 1) * sh + 1, sh)
    cols = slice(left, left + (w - 1) * sw + 1, sw)
    return dilated_shape, rows, cols


def _flipped_forward_kernel(kernel):
    """Keras transposed kernel (kh, kw, cout, cin) -> conv2d kernel (kh, kw, cin, cout), flipped in space."""
    return kernel[::-1, ::-1].transpose(0, 1, 3, 2)


def conv2d_transpose_forward(x, kernel, bias=None, strides=1, padding="valid", output_padding=None, dilation_rate=1):
    """Keras Conv2DTranspose: zero-insert, pad, correlate with the flipped kernel (stride 1)."""
    x, kernel, bias = as_float64(x, kernel, bias)
    dilated_shape, rows, cols = _transpose_as_correlation(
        x.shape, kernel.shape[:2], strides, padding, output_padding, dilation_rate
    )
    spread = np.zeros(dilated_shape)
    spread[:, rows, cols, :] = x
    return conv2d_forward(spread, _flipped_forward_kernel(kernel), bias, 1, "valid", dilation_rate)


def conv2d_transpose_backward_input(grad_output, kernel, input_shape, strides=1, padding="valid", output_padding=None, dilation_rate=1):
    grad_output, kernel = as_float64(grad_output, kernel)
    dilated_shape, rows, cols = _transpose_as_correlation(
        input_shape, kernel.shape[:2], strides, padding, output_padding, dilation_rate
    )
    grad_spread = conv2d_backward_input(
        grad_output, _flipped_forward_kernel(kernel), dilated_shape, 1, "valid", dilation_rate
    )
    return grad_spread[:, rows, cols, :]


def conv2d_transpose_backward_kernel(x, grad_output, kernel_shape, strides=1, padding="valid", output_padding=None, dilation_rate=1):
    x, grad_output = as_float64(x, grad_output)
    dilated_shape, rows, cols = _transpose_as_correlation(
        x.shape, kernel_shape[:2], strides, padding, output_padding, dilation_rate
    )
    spread = np.zeros(dilated_shape)
    spread[:, rows, cols, :] = x
    kh, kw, cout, cin = kernel_shape
    grad_forward_kernel = conv2d_backward_kernel(spread, grad_output, (kh, kw, cin, cout), 1, "valid", dilation_rate)
    return grad_forward_kernel[::-1, ::-1].transpose(0, 1, 3, 2)


# --------------------------------------------------------------------------- depthwise / separable


def depthwise_conv2d_forward(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1):
    """y[n, oh, ow, c*dm + m] = bias[c*dm + m] + sum_{i, j} xpad[n, tap (i, j), c] * kernel[i, j, c, m]"""
    x, kernel, bias = as_float64(x, kernel, bias)
    kh, kw, cin, dm = kernel.shape
    out_hw, pads = window_geometry(x.shape[1:3], (kh, kw), strides, padding, dilation_rate)
    xpad = _pad_nhwc(x, pads)
    y = np.zeros((x.shape[0], *out_hw, cin, dm))
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap_slices(i, j, out_hw, pair(strides), pair(dilation_rate))
            y += xpad[:, rows, cols, :, None] * kernel[i, j]
    y = y.reshape(x.shape[0], *out_hw, cin * dm)  # channel c*dm + m, as Keras
    if bias is not None:
        y += bias
    return y


def depthwise_conv2d_backward_input(grad_output, kernel, input_shape, strides=1, padding="valid", dilation_rate=1):
    grad_output, kernel = as_float64(grad_output, kernel)
    kh, kw, cin, dm = kernel.shape
    out_hw, pads = window_geometry(input_shape[1:3], (kh, kw), strides, padding, dilation_rate)
    (top, bottom), (left, right) = pads
    n, h, w, c = input_shape
    grad_y = grad_output.reshape(n, *out_hw, cin, dm)
    grad_xpad = np.zeros((n, h + top + bottom, w + left + right, c))
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap_slices(i, j, out_hw, pair(strides), pair(dilation_rate))
            grad_xpad[:, rows, cols, :] += (grad_y * kernel[i, j]).sum(axis=-1)
    return grad_xpad[:, top : top + h, left : left + w, :]


def depthwise_conv2d_backward_kernel(x, grad_output, kernel_shape, strides=1, padding="valid", dilation_rate=1):
    x, grad_output = as_float64(x, grad_output)
    kh, kw, cin, dm = kernel_shape
    out_hw, pads = window_geometry(x.shape[1:3], (kh, kw), strides, padding, dilation_rate)
    xpad = _pad_nhwc(x, pads)
    grad_y = grad_output.reshape(x.shape[0], *out_hw, cin, dm)
    grad_kernel = np.zeros(kernel_shape)
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap_slices(i, j, out_hw, pair(strides), pair(dilation_rate))
            grad_kernel[i, j] = np.einsum("nhwc,nhwcm->cm", xpad[:, rows, cols, :], grad_y)
    return grad_kernel


def separable_conv2d_forward(x, depthwise_kernel, pointwise_kernel, bias=None, strides=1, padding="valid", dilation_rate=1):
    """Keras SeparableConv2D: depthwise conv (strides, padding, dilation), then a 1x1 conv."""
    depthwise = depthwise_conv2d_forward(x, depthwise_kernel, None, strides, padding, dilation_rate)
    return conv2d_forward(depthwise, pointwise_kernel, bias, 1, "valid", 1)


# --------------------------------------------------------------------------- pooling


def _pool_windows(x, pool_size, strides, padding, fill):
    """All windows of x as (N, OH, OW, taps, C) with padded cells = fill, plus their validity mask.

    Taps are in row-major window order: tap t = i * pool_width + j.
    """
    ph, pw = pair(pool_size)
    strides = pair(pool_size if strides is None else strides)
    out_hw, pads = window_geometry(x.shape[1:3], (ph, pw), strides, padding)
    xpad = _pad_nhwc(x, pads, value=fill)
    inside = _pad_nhwc(np.ones((1, *x.shape[1:3], 1), dtype=bool), pads, value=False)
    windows, masks = [], []
    for i in range(ph):
        for j in range(pw):
            rows, cols = _tap_slices(i, j, out_hw, strides, (1, 1))
            windows.append(xpad[:, rows, cols, :])
            masks.append(inside[:, rows, cols, :])
    return np.stack(windows, axis=3), np.stack(masks, axis=3), out_hw, pads, strides


def _pool_scatter(grad_windows, input_shape, pool_size, strides, out_hw, pads):
    """Adjoint of _pool_windows: add each window cell's gradient back to its input pixel."""
    ph, pw = pair(pool_size)
    (top, bottom), (left, right) = pads
    n, h, w, c = input_shape
    grad_xpad = np.zeros((n, h + top + bottom, w + left + right, c))
    for i in range(ph):
        for j in range(pw):
            rows, cols = _tap_slices(i, j, out_hw, strides, (1, 1))
            grad_xpad[:, rows, cols, :] += grad_windows[:, :, :, i * pw + j, :]
    return grad_xpad[:, top : top + h, left : left + w, :]


def _max_pool_winners(x, pool_size, strides, padding):
    """Max of each window (NaN if the window holds a NaN) and the tap that wins it.

    Padded cells never win. Among equal maxima the first in row-major window order wins;
    if the window holds NaNs, the first NaN wins.
    """
    windows, inside, out_hw, pads, strides = _pool_windows(x, pool_size, strides, padding, -np.inf)
    has_nan = np.isnan(windows).any(axis=3, keepdims=True)
    y = np.where(inside, windows, -np.inf).max(axis=3, keepdims=True)
    y = np.where(has_nan, np.nan, y)
    is_winner = inside & np.where(has_nan, np.isnan(windows), windows == y)
    winner = np.argmax(is_winner, axis=3)  # argmax returns the first True
    return y[:, :, :, 0, :], winner, out_hw, pads, strides


def max_pool2d_forward(x, pool_size=2, strides=None, padding="valid"):
    (x,) = as_float64(x)
    return _max_pool_winners(x, pool_size, strides, padding)[0]


def max_pool2d_backward(x, grad_output, pool_size=2, strides=None, padding="valid"):
    x, grad_output = as_float64(x, grad_output)
    _, winner, out_hw, pads, strides = _max_pool_winners(x, pool_size, strides, padding)
    taps = pair(pool_size)[0] * pair(pool_size)[1]
    one_hot = np.arange(taps)[None, None, None, :, None] == winner[:, :, :, None, :]
    grad_windows = one_hot * grad_output[:, :, :, None, :]
    return _pool_scatter(grad_windows, x.shape, pool_size, strides, out_hw, pads)


def avg_pool2d_forward(x, pool_size=2, strides=None, padding="valid"):
    """Mean of the real (unpadded) cells of each window."""
    (x,) = as_float64(x)
    windows, inside, *_ = _pool_windows(x, pool_size, strides, padding, 0.0)
    return windows.sum(axis=3) / inside.sum(axis=3)


def avg_pool2d_backward(grad_output, input_shape, pool_size=2, strides=None, padding="valid"):
    (grad_output,) = as_float64(grad_output)
    probe = np.zeros((1, *input_shape[1:3], 1))
    _, inside, out_hw, pads, strides = _pool_windows(probe, pool_size, strides, padding, 0.0)
    count = inside.sum(axis=3, keepdims=True)
    grad_windows = inside * (grad_output[:, :, :, None, :] / count)
    return _pool_scatter(grad_windows, input_shape, pool_size, strides, out_hw, pads)


def global_avg_pool2d_forward(x):
    (x,) = as_float64(x)
    return x.mean(axis=(1, 2))


def global_avg_pool2d_backward(grad_output, input_shape):
    (grad_output,) = as_float64(grad_output)
    n, h, w, c = input_shape
    return np.broadcast_to(grad_output[:, None, None, :] / (h * w), input_shape).copy()


# --------------------------------------------------------------------------- batch normalization


def batch_norm_forward_training(x, gamma, beta, moving_mean, moving_variance, momentum=0.99, epsilon=1e-3):
    """Returns (y, batch_mean, batch_variance, new_moving_mean, new_moving_variance).

    Unlike the kernel, the moving statistics are returned, not updated in place.
    """
    x, gamma, beta, moving_mean, moving_variance = as_float64(x, gamma, beta, moving_mean, moving_variance)
    rows = x.reshape(-1, x.shape[-1])
    mean = rows.mean(axis=0)
    variance = ((rows - mean) ** 2).mean(axis=0)  # biased
    y = (x - mean) / np.sqrt(variance + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    new_moving_mean = moving_mean * momentum + mean * (1 - momentum)
    new_moving_variance = moving_variance * momentum + variance * (1 - momentum)
    return y, mean, variance, new_moving_mean, new_moving_variance


def batch_norm_forward_inference(x, gamma, beta, moving_mean, moving_variance, epsilon=1e-3):
    x, gamma, beta, moving_mean, moving_variance = as_float64(x, gamma, beta, moving_mean, moving_variance)
    y = (x - moving_mean) / np.sqrt(moving_variance + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def batch_norm_backward(grad_output, x, gamma, batch_mean, batch_variance, epsilon=1e-3):
    """Backward of the training forward, by the chain rule through mean and variance.

    With xhat = (x - mean) * inv_std and m rows per channel:
      grad_xhat  = grad_y * gamma
      grad_var   = sum(grad_xhat * (x - mean)) * -1/2 * inv_std**3
      grad_mean  = -sum(grad_xhat) * inv_std          (the variance term vanishes: sum(x - mean) = 0)
      grad_x     = grad_xhat * inv_std + grad_var * 2 (x - mean) / m + grad_mean / m
    """
    grad_output, x, gamma, mean, variance = as_float64(grad_output, x, gamma, batch_mean, batch_variance)
    channels = x.shape[-1]
    grad_y = grad_output.reshape(-1, channels)
    rows = x.reshape(-1, channels)
    m = rows.shape[0]
    if gamma is None:
        gamma = np.ones(channels)
    inv_std = 1.0 / np.sqrt(variance + epsilon)
    centered = rows - mean
    x_hat = centered * inv_std
    grad_x_hat = grad_y * gamma
    grad_variance = (grad_x_hat * centered).sum(axis=0) * -0.5 * inv_std**3
    grad_mean = -grad_x_hat.sum(axis=0) * inv_std
    grad_x = grad_x_hat * inv_std + grad_variance * 2.0 * centered / m + grad_mean / m
    grad_gamma = (grad_y * x_hat).sum(axis=0)
    grad_beta = grad_y.sum(axis=0)
    return grad_x.reshape(x.shape), grad_gamma, grad_beta
