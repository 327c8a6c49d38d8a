"""Batch normalization over every axis but the last (channels), training and inference.

Training:  y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta, with the batch's mean and
           biased variance; the kernel also updates the moving statistics in place:
           moving = moving * momentum + batch_statistic * (1 - momentum).
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


class BatchNormTraining(Function):
    def forward(self, x, gamma, beta, *, moving_mean, moving_variance, momentum, epsilon):
        x, gamma, beta = contiguous(x, gamma, beta)
        y, self.batch_mean, self.batch_variance = kernels.batch_norm_forward_training(
            x, gamma, beta, moving_mean, moving_variance, momentum=momentum, epsilon=epsilon)
        self.x, self.gamma, self.epsilon = x, gamma, epsilon
        return y

    def backward(self, grad):
        grad_x, grad_gamma, grad_beta = kernels.batch_norm_backward(
            contiguous(grad), self.x, self.gamma, self.batch_mean, self.batch_variance, epsilon=self.epsilon)
        return grad_x, grad_gamma, grad_beta


class BatchNormInference(Function):
    def forward(self, x, gamma, beta, *, moving_mean, moving_variance, epsilon):
        x, gamma, beta = contiguous(x, gamma, beta)
        self.x, self.gamma = x, gamma
        self.moving_mean = moving_mean
        self.inv_std = 1.0 / (moving_variance + epsilon) ** 0.5
        return kernels.batch_norm_forward_inference(x, gamma, beta, moving_mean, moving_variance, epsilon=epsilon)

    def backward(self, grad):
        need_x, need_gamma, need_beta = self.needs_input_grad
        scale = self.inv_std if self.gamma is None else self.gamma * self.inv_std
        grad_x = grad * scale if need_x else None
        grad_gamma = _sum_over_rows(grad * (self.x - self.moving_mean) * self.inv_std) if need_gamma else None
        grad_beta = _sum_over_rows(grad) if need_beta else None
        return grad_x, grad_gamma, grad_beta


def batch_norm(x, gamma, beta, moving_mean, moving_variance, training=False, momentum=0.99, epsilon=1e-3):
    """Batch normalization of x (channels last). gamma/beta may be None (scale/center off).

    moving_mean and moving_variance are arrays or Tensors of shape (C,); in training they
    are updated in place.
    """
    if isinstance(moving_mean, Tensor):
        moving_mean = moving_mean.data
    if isinstance(moving_variance, Tensor):
        moving_variance = moving_variance.data
    if training:
        return BatchNormTraining.apply(x, gamma, beta, moving_mean=moving_mean, moving_variance=moving_variance,
                                       momentum=momentum, epsilon=epsilon)
    return BatchNormInference.apply(x, gamma, beta, moving_mean=moving_mean, moving_variance=moving_variance,
                                    epsilon=epsilon)
