"""Operations that work across the channel axis of NHWC activations (Géron, ch. 14):
local response normalization (AlexNet, GoogLeNet) and depth-wise max pooling.

Both are array code (numpy on the CPU, CuPy on the GPU, through array_module): no native
kernel, the forward and its backward side by side.

Local response normalization, as tf.nn.local_response_normalization defines it, with
r = depth_radius, k = bias:

    sqr_sum[n, i, j, d] = sum(x[n, i, j, d - r : d + r + 1] ** 2)     (clipped at the edges)
    s = k + alpha * sqr_sum
    y = x * s ** -beta

Backward. y_d depends on x_j for every j in the window W(d) = [d - r, d + r], and j is in
W(d) exactly when d is in W(j) (the window is symmetric), so with g = dL/dy:

    dL/dx_j = g_j * s_j ** -beta  -  2 * alpha * beta * x_j * sum_{d in W(j)} g_d * x_d * s_d ** (-beta - 1)

PyTorch's torch.nn.functional.local_response_norm computes the same with size = 2r + 1,
k = bias, beta = beta and alpha_torch = alpha * size (it divides alpha by size).

Depth-wise max pooling: the maximum over windows of `pool_size` consecutive channels moved
by `strides` channels ("valid": no padding), (N, H, W, C) -> (N, H, W, (C - pool_size) //
strides + 1). As in the spatial max pooling kernels, the gradient of a window goes to its
first maximum.
"""

from ..autograd import Function, array_module, as_tensor

__all__ = ["local_response_normalization", "depth_max_pool", "channel_window_sum"]


def channel_window_sum(values, depth_radius):
    """sum(values[..., d - r : d + r + 1]) for every channel d, windows clipped at the edges.

    By a cumulative sum over the zero-padded channel axis: one pass whatever r is."""
    xp = array_module(values)
    channels = values.shape[-1]
    pad = [(0, 0)] * (values.ndim - 1) + [(depth_radius + 1, depth_radius)]
    cumulative = xp.cumsum(xp.pad(values, pad), axis=-1)
    # window of d covers padded positions d+1 .. d+2r+1: cumulative[d + 2r + 1] - cumulative[d]
    return cumulative[..., 2 * depth_radius + 1:2 * depth_radius + 1 + channels] - cumulative[..., :channels]


class LocalResponseNormalizationFunction(Function):
    def forward(self, x, *, depth_radius, bias, alpha, beta):
        self.x, self.depth_radius, self.alpha, self.beta = x, depth_radius, alpha, beta
        self.scale = bias + alpha * channel_window_sum(x * x, depth_radius)  # s, the divisor before ** beta
        self.inverse = self.scale ** -beta
        return x * self.inverse

    def backward(self, grad):
        x, alpha, beta = self.x, self.alpha, self.beta
        through_divisor = channel_window_sum(grad * x * self.inverse / self.scale, self.depth_radius)
        return (grad * self.inverse - (2 * alpha * beta) * x * through_divisor,)


def local_response_normalization(x, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5):
    """tf.nn.local_response_normalization on NHWC x (its defaults; AlexNet's are r=2, k=2,
    alpha=1e-4, beta=0.75 and Géron's listing uses r=2, k=1, alpha=2e-5, beta=0.75)."""
    x = as_tensor(x)
    if not x.is_floating:
        raise TypeError(f"local_response_normalization: x must be floating point, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"local_response_normalization: x must have a channel axis, got shape {x.shape}")
    if isinstance(depth_radius, bool) or not isinstance(depth_radius, int) or depth_radius < 0:
        raise ValueError(f"local_response_normalization: depth_radius must be an int >= 0, got {depth_radius!r}")
    if not bias > 0:  # with alpha >= 0 the divisor stays positive, so any beta is defined
        raise ValueError(f"local_response_normalization: bias must be > 0, got {bias!r}")
    if not alpha >= 0:
        raise ValueError(f"local_response_normalization: alpha must be >= 0, got {alpha!r}")
    return LocalResponseNormalizationFunction.apply(x, depth_radius=depth_radius, bias=float(bias),
                                                    alpha=float(alpha), beta=float(beta))


class DepthMaxPoolFunction(Function):
    def forward(self, x, *, pool_size, strides):
        xp = array_module(x)
        groups = (x.shape[-1] - pool_size) // strides + 1
        # windows[..., g, k] = x[..., g * strides + k]
        self.channels = xp.arange(groups)[:, None] * strides + xp.arange(pool_size)[None, :]
        windows = x[..., self.channels]
        self.argmax = windows.argmax(axis=-1)  # the first maximum of each window
        self.input_shape, self.dtype = x.shape, x.dtype
        return xp.take_along_axis(windows, self.argmax[..., None], axis=-1)[..., 0]

    def backward(self, grad):
        xp = array_module(grad)
        grad_x = xp.zeros(self.input_shape, dtype=self.dtype)
        # For one offset k the channels g * strides + k are distinct, so += does not collide;
        # overlapping windows (strides < pool_size) add up over the offsets.
        for k in range(self.channels.shape[1]):
            grad_x[..., self.channels[:, k]] += xp.where(self.argmax == k, grad, 0)
        return (grad_x,)


def depth_max_pool(x, pool_size=3, strides=None):
    """Max pooling over the channel axis (the last): windows of pool_size channels, moved by
    strides (default pool_size), no padding. Géron's depth-wise pooling uses pool_size=3,
    so 12 channels become 4."""
    x = as_tensor(x)
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError(f"depth_max_pool: pool_size must be a positive int, got {pool_size!r}")
    strides = pool_size if strides is None else strides
    if isinstance(strides, bool) or not isinstance(strides, int) or strides < 1:
        raise ValueError(f"depth_max_pool: strides must be a positive int, got {strides!r}")
    if x.ndim < 1 or x.shape[-1] < pool_size:
        raise ValueError(f"depth_max_pool: the channel axis must hold at least pool_size={pool_size} "
                         f"channels, got shape {x.shape}")
    return DepthMaxPoolFunction.apply(x, pool_size=pool_size, strides=strides)
