"""Convolutions: forward calls the native kernel, backward calls its backward kernels.

Layouts are Keras': x (N, H, W, C); Conv2D kernel (kh, kw, cin, cout); Conv2DTranspose
kernel (kh, kw, cout, cin); DepthwiseConv2D kernel (kh, kw, cin, depth_multiplier);
SeparableConv2D = depthwise kernel then a (1, 1, cin * depth_multiplier, cout) pointwise one.
Geometry arguments (strides, padding, dilation_rate, output_padding) are passed to the
kernels unchanged; convlab.kernels checks them and names what is wrong.
"""

from .. import kernels
from ..autograd import Function, array_module

__all__ = ["conv2d", "conv2d_transpose", "depthwise_conv2d", "separable_conv2d", "contiguous"]


def contiguous(*arrays):
    """The arrays as C-contiguous ones (no copy when they already are), as the kernels need.

    Views reach the ops from users (`images[..., ::-1]`) and from other ops' backward
    passes (a slice in ZeroPadding2D's, a transpose in Transpose's); the kernels refuse them.
    """
    result = tuple(None if a is None else array_module(a).ascontiguousarray(a) for a in arrays)
    return result if len(result) > 1 else result[0]


class Conv2D(Function):
    def forward(self, x, kernel, bias, **geometry):
        x, kernel, bias = contiguous(x, kernel, bias)
        self.x, self.kernel, self.geometry = x, kernel, geometry
        return kernels.conv2d_forward(x, kernel, bias, **geometry)

    def backward(self, grad):
        grad = contiguous(grad)
        x, kernel, geometry = self.x, self.kernel, self.geometry
        need_x, need_kernel, need_bias = self.needs_input_grad
        return (
            kernels.conv2d_backward_input(grad, kernel, x.shape, **geometry) if need_x else None,
            kernels.conv2d_backward_kernel(x, grad, kernel.shape, **geometry) if need_kernel else None,
            kernels.conv2d_backward_bias(grad) if need_bias else None,
        )


class Conv2DTranspose(Function):
    def forward(self, x, kernel, bias, **geometry):
        x, kernel, bias = contiguous(x, kernel, bias)
        self.x, self.kernel, self.geometry = x, kernel, geometry
        return kernels.conv2d_transpose_forward(x, kernel, bias, **geometry)

    def backward(self, grad):
        grad = contiguous(grad)
        x, kernel, geometry = self.x, self.kernel, self.geometry
        need_x, need_kernel, need_bias = self.needs_input_grad
        return (
            kernels.conv2d_transpose_backward_input(grad, kernel, x.shape, **geometry) if need_x else None,
            kernels.conv2d_transpose_backward_kernel(x, grad, kernel.shape, **geometry) if need_kernel else None,
            kernels.conv2d_backward_bias(grad) if need_bias else None,
        )


class DepthwiseConv2D(Function):
    def forward(self, x, kernel, bias, **geometry):
        x, kernel, bias = contiguous(x, kernel, bias)
        self.x, self.kernel, self.geometry = x, kernel, geometry
        return kernels.depthwise_conv2d_forward(x, kernel, bias, **geometry)

    def backward(self, grad):
        grad = contiguous(grad)
        x, kernel, geometry = self.x, self.kernel, self.geometry
        need_x, need_kernel, need_bias = self.needs_input_grad
        return (
            kernels.depthwise_conv2d_backward_input(grad, kernel, x.shape, **geometry) if need_x else None,
            kernels.depthwise_conv2d_backward_kernel(x, grad, kernel.shape, **geometry) if need_kernel else None,
            kernels.conv2d_backward_bias(grad) if need_bias else None,
        )


class SeparableConv2D(Function):
    """depthwise(x) = d, then y = conv1x1(d, pointwise) + bias.

    Backward runs the chain backwards through the two kernels. The intermediate d is
    recomputed in backward rather than kept from forward: one depthwise pass costs only
    kh*kw multiply-adds per value, while keeping d alive would hold an activation of
    cin * depth_multiplier channels for every separable layer between forward and backward.
    """

    def forward(self, x, depthwise_kernel, pointwise_kernel, bias, **geometry):
        x, depthwise_kernel, pointwise_kernel, bias = contiguous(x, depthwise_kernel, pointwise_kernel, bias)
        self.x, self.depthwise_kernel, self.pointwise_kernel = x, depthwise_kernel, pointwise_kernel
        self.geometry = geometry
        return kernels.separable_conv2d_forward(x, depthwise_kernel, pointwise_kernel, bias, **geometry)

    def backward(self, grad):
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
    return Conv2D.apply(x, kernel, bias, strides=strides, padding=padding, dilation_rate=dilation_rate)


def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid", output_padding=None, dilation_rate=1):
    return Conv2DTranspose.apply(x, kernel, bias, strides=strides, padding=padding,
                                 output_padding=output_padding, dilation_rate=dilation_rate)


def depthwise_conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1):
    return DepthwiseConv2D.apply(x, kernel, bias, strides=strides, padding=padding, dilation_rate=dilation_rate)


def separable_conv2d(x, depthwise_kernel, pointwise_kernel, bias=None, strides=1, padding="valid", dilation_rate=1):
    return SeparableConv2D.apply(x, depthwise_kernel, pointwise_kernel, bias, strides=strides,
                                 padding=padding, dilation_rate=dilation_rate)
