"""Batch normalization over every axis but the last (channels), training and inference.

x has shape (N, ..., C) (rank 2 or more; (N, H, W, C) for NHWC activations) and is read as a
matrix of M rows (M = N * H * W for NHWC) and C columns; every statistic is per channel, over
the M rows. gamma and beta may be None (scale=False / center=False): they are then 1 and 0.

Training:  y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta, with the batch's mean and
           biased variance (divided by M); the kernel also updates the moving statistics
           in place: moving = moving * momentum + batch_statistic * (1 - momentum).
Inference: the same formula with the moving statistics, which are constants here, so the
           backward is elementwise: dx = g * gamma / sqrt(moving_var + eps).
"""

from .. import kernels
from ..autograd import Function, Tensor
from .conv import contiguous

__all__ = ["batch_norm"]


def _sum_over_rows(a):
    """Sum over every axis but the channel axis."""
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


class BatchNormTrainingFunction(Function):
    """batch_norm(training=True) with its backward (applied by `batch_norm`)."""

    def forward(self, x, gamma, beta, *, moving_mean, moving_variance, momentum, epsilon):
        """y, mean_B, var_B = kernels.batch_norm_forward_training(x, gamma, beta, moving_mean,
        moving_variance), which also updates the moving statistics in place; keeps x, gamma and
        the batch statistics for backward."""
        x, gamma, beta = contiguous(x, gamma, beta)
        y, self.batch_mean, self.batch_variance = kernels.batch_norm_forward_training(
            x, gamma, beta, moving_mean, moving_variance, momentum=momentum, epsilon=epsilon)
        self.x, self.gamma, self.epsilon = x, gamma, epsilon
        return y

    def backward(self, grad):
        """dL/dx, dL/dgamma, dL/dbeta, all three from kernels.batch_norm_backward(g, x, gamma,
        mean_B, var_B). mean_B and var_B depend on x, which adds two terms to dL/dx; with
        g = dL/dy, inv_std = 1 / sqrt(var_B + eps), xhat = (x - mean_B) * inv_std and the sums
        over the M rows, per channel:

            dL/dbeta  = sum g
            dL/dgamma = sum g * xhat
            dL/dx     = gamma * inv_std / M * (M * g - dL/dbeta - xhat * dL/dgamma)

        (gamma = 1 when it is None). The moving statistics get no gradient.
        """
        grad_x, grad_gamma, grad_beta = kernels.batch_norm_backward(
            contiguous(grad), self.x, self.gamma, self.batch_mean, self.batch_variance, epsilon=self.epsilon)
        return grad_x, grad_gamma, grad_beta


class BatchNormInferenceFunction(Function):
    """batch_norm(training=False) with its backward (applied by `batch_norm`)."""

    def forward(self, x, gamma, beta, *, moving_mean, moving_variance, epsilon):
        """y = kernels.batch_norm_forward_inference(x, gamma, beta, moving_mean, moving_variance);
        keeps x, gamma, moving_mean and 1 / sqrt(moving_variance + eps) for backward."""
        x, gamma, beta = contiguous(x, gamma, beta)
        self.x, self.gamma = x, gamma
        self.moving_mean = moving_mean
        self.inv_std = 1.0 / (moving_variance + epsilon) ** 0.5
        return kernels.batch_norm_forward_inference(x, gamma, beta, moving_mean, moving_variance, epsilon=epsilon)

    def backward(self, grad):
        """Elementwise, in array code (no kernel): with g = dL/dy and
        inv_std = 1 / sqrt(moving_variance + eps), sums over the rows, per channel,

            dL/dx     = g * gamma * inv_std
            dL/dgamma = sum g * (x - moving_mean) * inv_std
            dL/dbeta  = sum g

        (gamma = 1 when it is None).
        """
        need_x, need_gamma, need_beta = self.needs_input_grad
        scale = self.inv_std if self.gamma is None else self.gamma * self.inv_std
        grad_x = grad * scale if need_x else None
        grad_gamma = _sum_over_rows(grad * (self.x - self.moving_mean) * self.inv_std) if need_gamma else None
        grad_beta = _sum_over_rows(grad) if need_beta else None
        return grad_x, grad_gamma, grad_beta


def batch_norm(x, gamma, beta, moving_mean, moving_variance, training=False, momentum=0.99, epsilon=1e-3):
    """Batch normalization of x, channels last, as Keras' BatchNormalization (axis=-1).

    training=True, with the batch's statistics over all axes but the last (M values each):

        mean_B[c] = sum x[..., c] / M        var_B[c] = sum (x[..., c] - mean_B[c])**2 / M
        y[..., c] = gamma[c] * (x[..., c] - mean_B[c]) / sqrt(var_B[c] + epsilon) + beta[c]

    and, in place, moving_mean = moving_mean * momentum + mean_B * (1 - momentum) (moving_variance
    the same with var_B). training=False uses moving_mean and moving_variance in place of mean_B
    and var_B and leaves them as they are.

    x                (N, ..., C), e.g. NHWC (N, H, W, C); y has the same shape
    gamma, beta      (C,) or None (scale=False / center=False: 1 and 0)
    moving_mean,
    moving_variance  (C,) arrays or Tensors; in training they are updated in place
    """
    if isinstance(moving_mean, Tensor):
        moving_mean = moving_mean.data
    if isinstance(moving_variance, Tensor):
        moving_variance = moving_variance.data
    if training:
        return BatchNormTrainingFunction.apply(x, gamma, beta, moving_mean=moving_mean,
                                               moving_variance=moving_variance, momentum=momentum,
                                               epsilon=epsilon)
    return BatchNormInferenceFunction.apply(x, gamma, beta, moving_mean=moving_mean, moving_variance=moving_variance,
                                            epsilon=epsilon)
