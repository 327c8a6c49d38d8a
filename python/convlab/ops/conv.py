"""Convolutions as differentiable ops: each Function's forward calls a native kernel
through convlab.kernels, and its backward calls the backward kernels.

Layouts are Keras': activations NHWC, x (N, H, W, C), and the kernels

    conv2d            (kh, kw, cin, cout)
    conv2d_transpose  (kh, kw, cout, cin)
    depthwise_conv2d  (kh, kw, cin, depth_multiplier)
    separable_conv2d  depthwise (kh, kw, cin, depth_multiplier), then pointwise
                      (1, 1, cin * depth_multiplier, cout)

Index math, one for all of them (csrc/common/geometry.h): output pixel (oh, ow) and kernel
tap (i, j) read input pixel

    ih = oh * sh - pad_top + i * dh        iw = ow * sw - pad_left + j * dw

with strides (sh, sw) and dilation_rate (dh, dw); a tap outside the input reads zero. Along
the height (the width likewise), with the dilated kernel extent k_eff = (kh - 1) * dh + 1:

    "valid"    OH = floor((H - k_eff) / sh) + 1                  pad_top = 0
    "same"     OH = ceil(H / sh)                                 pad_top = total // 2, the
               total = max((OH - 1) * sh + k_eff - H, 0)         smaller half before (TensorFlow)
    ((top, bottom), (left, right))   explicit padding (not for conv2d_transpose):
               OH = floor((H + top + bottom - k_eff) / sh) + 1   pad_top = top

Geometry arguments (strides, padding, dilation_rate, output_padding) are passed to the
kernels unchanged; convlab.kernels checks them and names what is wrong.
"""

from .. import kernels
from ..autograd import Function, array_module

__all__ = ["conv2d", "conv2d_transpose", "depthwise_conv2d", "separable_conv2d", "contiguous"]


def contiguous(*arrays):
    """The arrays as C-contiguous ones (no copy when they already are), as the kernels need.

    Views reach the ops from users (`images[..., ::-1]`) and from other ops' backward
    passes (a slice in ZeroPadding2dFunction's, a transpose in TransposeFunction's); the kernels
    refuse them.
    """
    result = tuple(None if a is None else array_module(a).ascontiguousarray(a) for a in arrays)
    return result if len(result) > 1 else result[0]


class Conv2dFunction(Function):
    """conv2d with its backward (applied by `conv2d`)."""

    def forward(self, x, kernel, bias, **geometry):
        """y = kernels.conv2d_forward(x, kernel, bias); keeps x and kernel for backward."""
        x, kernel, bias = contiguous(x, kernel, bias)
        self.x, self.kernel, self.geometry = x, kernel, geometry
        return kernels.conv2d_forward(x, kernel, bias, **geometry)

    def backward(self, grad):
        """With g = dL/dy, each gradient from its own kernel, and only when it is needed:

            dL/dx       kernels.conv2d_backward_input(g, kernel, x.shape)
                        dx[n, ih, iw, ci] = sum of g[n, oh, ow, co] * kernel[i, j, ci, co] over co
                        and over the (oh, ow, i, j) whose tap reads (ih, iw)
            dL/dkernel  kernels.conv2d_backward_kernel(x, g, kernel.shape)
                        dkernel[i, j, ci, co] = sum_{n, oh, ow} x[n, ih, iw, ci] * g[n, oh, ow, co]
            dL/dbias    kernels.conv2d_backward_bias(g)
                        dbias[co] = sum_{n, oh, ow} g[n, oh, ow, co]
        """
        grad = contiguous(grad)
        x, kernel, geometry = self.x, self.kernel, self.geometry
        need_x, need_kernel, need_bias = self.needs_input_grad
        return (
            kernels.conv2d_backward_input(grad, kernel, x.shape, **geometry) if need_x else None,
            kernels.conv2d_backward_kernel(x, grad, kernel.shape, **geometry) if need_kernel else None,
            kernels.conv2d_backward_bias(grad) if need_bias else None,
        )


class Conv2dTransposeFunction(Function):
    """conv2d_transpose with its backward (applied by `conv2d_transpose`)."""

    def forward(self, x, kernel, bias, **geometry):
        """y = kernels.conv2d_transpose_forward(x, kernel, bias); keeps x and kernel for backward."""
        x, kernel, bias = contiguous(x, kernel, bias)
        self.x, self.kernel, self.geometry = x, kernel, geometry
        return kernels.conv2d_transpose_forward(x, kernel, bias, **geometry)

    def backward(self, grad):
        """With g = dL/dy and (h, w) -> (h * sh - pad_top + i * dh, w * sw - pad_left + j * dw)
        the output pixel that tap (i, j) of input pixel (h, w) writes (see conv2d_transpose):

            dL/dx       kernels.conv2d_transpose_backward_input(g, kernel, x.shape), a conv2d of g:
                        dx[n, h, w, ci] = sum_{i, j, co} g[n, that pixel, co] * kernel[i, j, co, ci]
            dL/dkernel  kernels.conv2d_transpose_backward_kernel(x, g, kernel.shape)
                        dkernel[i, j, co, ci] = sum_{n, h, w} g[n, that pixel, co] * x[n, h, w, ci]
            dL/dbias    kernels.conv2d_backward_bias(g)
                        dbias[co] = sum of g[..., co] over every output pixel

        Taps whose pixel falls outside the output contribute nothing.
        """
        grad = contiguous(grad)
        x, kernel, geometry = self.x, self.kernel, self.geometry
        need_x, need_kernel, need_bias = self.needs_input_grad
        return (
            kernels.conv2d_transpose_backward_input(grad, kernel, x.shape, **geometry) if need_x else None,
            kernels.conv2d_transpose_backward_kernel(x, grad, kernel.shape, **geometry) if need_kernel else None,
            kernels.conv2d_backward_bias(grad) if need_bias else None,
        )


class DepthwiseConv2dFunction(Function):
    """depthwise_conv2d with its backward (applied by `depthwise_conv2d`)."""

    def forward(self, x, kernel, bias, **geometry):
        """y = kernels.depthwise_conv2d_forward(x, kernel, bias); keeps x and kernel for backward."""
        x, kernel, bias = contiguous(x, kernel, bias)
        self.x, self.kernel, self.geometry = x, kernel, geometry
        return kernels.depthwise_conv2d_forward(x, kernel, bias, **geometry)

    def backward(self, grad):
        """With g = dL/dy and dm the depth multiplier:

            dL/dx       kernels.depthwise_conv2d_backward_input(g, kernel, x.shape)
                        dx[n, ih, iw, c] = sum of g[n, oh, ow, c*dm + m] * kernel[i, j, c, m] over m
                        and over the (oh, ow, i, j) whose tap reads (ih, iw)
            dL/dkernel  kernels.depthwise_conv2d_backward_kernel(x, g, kernel.shape)
                        dkernel[i, j, c, m] = sum_{n, oh, ow} x[n, ih, iw, c] * g[n, oh, ow, c*dm + m]
            dL/dbias    kernels.conv2d_backward_bias(g)
                        dbias[k] = sum_{n, oh, ow} g[n, oh, ow, k]
        """
        grad = contiguous(grad)
        x, kernel, geometry = self.x, self.kernel, self.geometry
        need_x, need_kernel, need_bias = self.needs_input_grad
        return (
            kernels.depthwise_conv2d_backward_input(grad, kernel, x.shape, **geometry) if need_x else None,
            kernels.depthwise_conv2d_backward_kernel(x, grad, kernel.shape, **geometry) if need_kernel else None,
            kernels.conv2d_backward_bias(grad) if need_bias else None,
        )


class SeparableConv2dFunction(Function):
    """separable_conv2d with its backward (applied by `separable_conv2d`): depthwise(x) = d,
    then y = conv1x1(d, pointwise) + bias.

    Backward runs the chain backwards through the two kernels. The intermediate d is
    recomputed in backward rather than kept from forward: one depthwise pass costs only
    kh*kw multiply-adds per value, while keeping d alive would hold an activation of
    cin * depth_multiplier channels for every separable layer between forward and backward.
    """

    def forward(self, x, depthwise_kernel, pointwise_kernel, bias, **geometry):
        """y = kernels.separable_conv2d_forward(...), which runs depthwise_conv2d_forward, then
        conv2d_forward with the 1x1 pointwise kernel; keeps x and both kernels for backward."""
        x, depthwise_kernel, pointwise_kernel, bias = contiguous(x, depthwise_kernel, pointwise_kernel, bias)
        self.x, self.depthwise_kernel, self.pointwise_kernel = x, depthwise_kernel, pointwise_kernel
        self.geometry = geometry
        return kernels.separable_conv2d_forward(x, depthwise_kernel, pointwise_kernel, bias, **geometry)

    def backward(self, grad):
        """With g = dL/dy, through the pointwise 1x1 conv, then the depthwise conv:

            d                    kernels.depthwise_conv2d_forward(x, depthwise_kernel), recomputed
            dL/dpointwise_kernel kernels.conv2d_backward_kernel(d, g, pointwise_kernel.shape)
            dL/dd                kernels.conv2d_backward_input(g, pointwise_kernel, d.shape)
                                 dd[n, oh, ow, k] = sum_co g[n, oh, ow, co] * pointwise_kernel[0, 0, k, co]
            dL/dx                kernels.depthwise_conv2d_backward_input(dL/dd, depthwise_kernel, x.shape)
            dL/ddepthwise_kernel kernels.depthwise_conv2d_backward_kernel(x, dL/dd, depthwise_kernel.shape)
            dL/dbias             kernels.conv2d_backward_bias(g)

        (the formulas of Conv2dFunction.backward and DepthwiseConv2dFunction.backward).
        """
        grad = contiguous(grad)
        x, depthwise_kernel, pointwise_kernel, geometry = (
            self.x, self.depthwise_kernel, self.pointwise_kernel, self.geometry)
        need_x, need_depthwise, need_pointwise, need_bias = self.needs_input_grad
        grad_x = grad_depthwise = grad_pointwise = None
        if need_pointwise:
            depthwise_output = kernels.depthwise_conv2d_forward(x, depthwise_kernel, None, **geometry)
            grad_pointwise = kernels.conv2d_backward_kernel(depthwise_output, grad, pointwise_kernel.shape)
        if need_x or need_depthwise:
            depthwise_output_shape = grad.shape[:3] + (pointwise_kernel.shape[2],)
            grad_depthwise_output = kernels.conv2d_backward_input(grad, pointwise_kernel, depthwise_output_shape)
            if need_x:
                grad_x = kernels.depthwise_conv2d_backward_input(
                    grad_depthwise_output, depthwise_kernel, x.shape, **geometry)
            if need_depthwise:
                grad_depthwise = kernels.depthwise_conv2d_backward_kernel(
                    x, grad_depthwise_output, depthwise_kernel.shape, **geometry)
        grad_bias = kernels.conv2d_backward_bias(grad) if need_bias else None
        return grad_x, grad_depthwise, grad_pointwise, grad_bias


def conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1):
    """2-D convolution, as Keras' Conv2D computes it (a cross-correlation: the kernel is not flipped).

        y[n, oh, ow, co] = bias[co] + sum_{i, j, ci} x[n, ih, iw, ci] * kernel[i, j, ci, co]

    with ih = oh * sh - pad_top + i * dh and iw = ow * sw - pad_left + j * dw (zero outside x).

    x       (N, H, W, cin)          Tensor or array, float32 or float64
    kernel  (kh, kw, cin, cout)
    bias    (cout,) or None
    y       (N, OH, OW, cout)       OH, OW and the padding as in the module docstring

    strides and dilation_rate are an int or a pair; padding is "valid", "same" or explicit
    ((top, bottom), (left, right)).
    """
    return Conv2dFunction.apply(x, kernel, bias, strides=strides, padding=padding, dilation_rate=dilation_rate)


def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid", output_padding=None, dilation_rate=1):
    """Transposed 2-D convolution, as Keras' Conv2DTranspose: the gradient of conv2d with respect
    to its input, with the same kernel. Every tap (i, j) of every input pixel (h, w) adds to one
    output pixel,

        y[n, h * sh - pad_top + i * dh, w * sw - pad_left + j * dw, co] += sum_ci x[n, h, w, ci] * kernel[i, j, co, ci]

    (what lands outside the output is dropped), then y += bias.

    x       (N, H, W, cin)
    kernel  (kh, kw, cout, cin), as Keras stores it: the conv2d kernel (kh, kw, cin', cout')
            of the conv whose input gradient this is, with cin' = cout and cout' = cin
    bias    (cout,) or None
    y       (N, OH, OW, cout)

    padding is "valid" or "same". Along the height (the width likewise), with
    k_eff = (kh - 1) * dh + 1, OH is Keras' deconv_output_length:

        output_padding None   "valid": OH = H * sh + max(k_eff - sh, 0)      "same": OH = H * sh
        output_padding p      OH = (H - 1) * sh + k_eff - 2 * pad + p,  pad = k_eff // 2 ("same"), 0 ("valid")

    and pad_top = max((H - 1) * sh + k_eff - OH, 0) // 2 for "same", 0 for "valid".
    output_padding (an int or a pair) must be smaller than the stride.
    """
    return Conv2dTransposeFunction.apply(x, kernel, bias, strides=strides, padding=padding,
                                         output_padding=output_padding, dilation_rate=dilation_rate)


def depthwise_conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1):
    """Depthwise 2-D convolution, as Keras' DepthwiseConv2D: every input channel c is convolved on
    its own with dm = depth_multiplier filters, filter m writing output channel c * dm + m:

        y[n, oh, ow, c*dm + m] = bias[c*dm + m] + sum_{i, j} x[n, ih, iw, c] * kernel[i, j, c, m]

    with ih, iw as in conv2d (zero outside x).

    x       (N, H, W, C)
    kernel  (kh, kw, C, dm)
    bias    (C * dm,) or None
    y       (N, OH, OW, C * dm)     OH, OW and the padding as in the module docstring
    """
    return DepthwiseConv2dFunction.apply(x, kernel, bias, strides=strides, padding=padding,
                                         dilation_rate=dilation_rate)


def separable_conv2d(x, depthwise_kernel, pointwise_kernel, bias=None, strides=1, padding="valid", dilation_rate=1):
    """Separable 2-D convolution, as Keras' SeparableConv2D: a depthwise conv (which takes the
    strides, padding and dilation), then a 1x1 conv mixing the channels:

        d[n, oh, ow, c*dm + m] = sum_{i, j} x[n, ih, iw, c] * depthwise_kernel[i, j, c, m]
        y[n, oh, ow, co]       = bias[co] + sum_k d[n, oh, ow, k] * pointwise_kernel[0, 0, k, co]

    x                 (N, H, W, cin)
    depthwise_kernel  (kh, kw, cin, dm)
    pointwise_kernel  (1, 1, cin * dm, cout)
    bias              (cout,) or None
    y                 (N, OH, OW, cout)     OH, OW as for depthwise_conv2d
    """
    return SeparableConv2dFunction.apply(x, depthwise_kernel, pointwise_kernel, bias, strides=strides,
                                         padding=padding, dilation_rate=dilation_rate)
