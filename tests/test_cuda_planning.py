"""The CUDA kernels' launch planning, checked on the CPU for shapes no test could allocate.

convlab._cuda_host.plan is the kernel table bound to a runner that records each launch
(kernel name, grid, block, shared memory, workspace) instead of running it. The arrays
handed to it are views with the right shape and strides over one element of memory: the
planner reads only their shapes. Every recorded plan has already passed the launch-limit
check (grid y/z <= 65535, 32..1024 threads, <= 48 KiB shared memory) or the call raised.
Here the grids are compared with counts made independently: the elements each grid must
cover, and the tiles of the GEMMs.
"""

import math

import numpy as np
import pytest

from convlab import _cpu, _cuda_host

plan = _cuda_host.plan
GRID_STRIDE_CAP = _cuda_host.grid_stride_max_blocks
# csrc/cuda/conv2d.cuh, Conv2dTiles: (BM, BN, BK) of the implicit GEMMs, per element type.
CONV_TILES = {np.dtype(np.float32): (128, 64, 8), np.dtype(np.float64): (64, 64, 8)}


def fake(shape, dtype):
    """A C-contiguous array of `shape` that owns one element: for planning only."""
    dtype = np.dtype(dtype)
    strides = [dtype.itemsize] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=tuple(shape), strides=strides)


def launches(kernel, *args, variant):
    getattr(plan, kernel)(*args, variant=variant)
    recorded = plan.launches()
    assert recorded["launches"], f"{kernel} planned no launch"
    return recorded


def same_out(in_size, stride):
    return -(-in_size // stride)


def grid_stride_blocks(count, threads):
    return min(math.ceil(count / threads), GRID_STRIDE_CAP)


# Shapes from the books' layers to far past 2^31 elements (the last ones exist only as plans).
CONV_SHAPES = [
    # (N, H, W, Cin, Cout, k, stride)
    (1, 5, 7, 3, 2, 3, 1),
    (32, 180, 180, 3, 32, 3, 1),
    (32, 89, 89, 32, 64, 3, 2),
    (32, 22, 22, 256, 512, 3, 1),
    (7, 13, 300, 129, 65, 5, 3),
    (64, 1024, 1024, 64, 64, 3, 1),      # x: 4.3e9 elements
    (2, 46341, 46341, 1, 3, 3, 1),       # y: 1.3e10 elements
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("n, h, w, cin, cout, k, stride", CONV_SHAPES)
def test_conv2d_grids_cover_every_output_once(dtype, n, h, w, cin, cout, k, stride):
    g = _cpu.conv2d_geometry((n, h, w, cin), (k, k), cout, (stride, stride), (1, 1), "same")
    oh, ow = same_out(h, stride), same_out(w, stride)
    assert (g.out_height, g.out_width) == (oh, ow)
    x, kernel, y = fake((n, h, w, cin), dtype), fake((k, k, cin, cout), dtype), fake((n, oh, ow, cout), dtype)
    bm, bn, _ = CONV_TILES[np.dtype(dtype)]

    fast = launches("conv2d_forward", g, x, kernel, None, y, variant="fast")["launches"]
    assert [launch["kernel"] for launch in fast] == ["conv2d_forward_tiled"]
    m = n * oh * ow
    assert fast[0]["grid"] == (math.ceil(m / bm), math.ceil(cout / bn), 1)

    reference = launches("conv2d_forward", g, x, kernel, None, y, variant="reference")["launches"]
    assert reference[0]["grid"] == (grid_stride_blocks(m * cout, reference[0]["threads"]), 1, 1)

    backward_input = launches("conv2d_backward_input", g, y, kernel, x, variant="fast")["launches"]
    assert backward_input[0]["grid"] == (math.ceil(n * h * w / bm), math.ceil(cin / bn), 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("n, h, w, cin, cout, k, stride", CONV_SHAPES)
def test_conv2d_kernel_gradient_split_k_covers_the_reduction(dtype, n, h, w, cin, cout, k, stride):
    g = _cpu.conv2d_geometry((n, h, w, cin), (k, k), cout, (stride, stride), (1, 1), "same")
    x, y = fake((n, h, w, cin), dtype), fake(g.output_shape, dtype)
    grad_kernel = fake((k, k, cin, cout), dtype)
    recorded = launches("conv2d_backward_kernel", g, x, y, grad_kernel, variant="fast")
    split = recorded["launches"][0]
    assert split["kernel"] == "conv2d_backward_kernel_split"
    bm, bn, bk = CONV_TILES[np.dtype(dtype)]
    patch = k * k * cin
    tiles = math.ceil(patch / bm) * math.ceil(cout / bn)
    assert split["grid"][:2] == (math.ceil(patch / bm), math.ceil(cout / bn))
    splits = split["grid"][2]
    chunks = math.ceil(n * g.out_height * g.out_width / bk)
    assert 1 <= splits <= min(64, chunks)
    # Enough blocks for two per SM of a 132-SM GPU, unless the cap or the chunks stop it.
    assert tiles * splits >= min(2 * 132, tiles * min(64, chunks))
    itemsize = np.dtype(dtype).itemsize
    if splits > 1:
        reduce = recorded["launches"][1]
        assert reduce["kernel"] == "conv2d_backward_kernel_reduce_splits"
        assert recorded["workspace_bytes"] == splits * patch * cout * itemsize
    else:
        assert len(recorded["launches"]) == 1 and recorded["workspace_bytes"] == 0


@pytest.mark.parametrize("rows, channels", [(1, 1), (5, 70), (32 * 90 * 90, 64),
                                            (3_000_000_000, 3), (1000, 200_000)])
def test_batch_norm_plans_cover_rows_and_channels(rows, channels):
    x = fake((rows, channels), np.float32)
    vector = fake((channels,), np.float32)
    y = fake((rows, channels), np.float32)
    recorded = launches("batch_norm_forward_training", x, vector, vector, vector, vector, 0.99,
                        1e-3, y, vector, vector, variant="fast")
    names = [launch["kernel"] for launch in recorded["launches"]]
    assert names[-1] == "batch_norm_normalize_fast"
    split = recorded["launches"][0]
    splits = split["grid"][1]
    assert 1 <= splits <= rows
    # The workspace: the normalize pass's three float coefficients per channel (center,
    # scale, offset), and each split's two sums (double) for every channel.
    assert recorded["workspace_bytes"] == 3 * 4 * channels + splits * 2 * 8 * channels
    normalize = recorded["launches"][-1]
    width = min(channels, 256)
    assert normalize["grid"][1] == min(math.ceil(channels / width), 65535)
    assert normalize["grid"][0] == min(math.ceil(rows / (256 // width)), GRID_STRIDE_CAP)


@pytest.mark.parametrize("variant", ["fast", "reference"])
@pytest.mark.parametrize("shape", [(1, 3, 3, 1), (32, 90, 90, 64), (8, 9000, 9000, 8)])
def test_every_pooling_and_depthwise_plan_is_launchable(variant, shape):
    n, h, w, c = shape
    x = fake(shape, np.float32)
    g = _cpu.pool2d_geometry(shape, (3, 3), (2, 2), "same")
    y = fake(g.output_shape, np.float32)
    for kernel, args in [("max_pool2d_forward", (g, x, y)),
                         ("max_pool2d_backward", (g, x, y, x)),
                         ("avg_pool2d_forward", (g, x, y)),
                         ("avg_pool2d_backward", (g, y, x))]:
        recorded = launches(kernel, *args, variant=variant)
        for launch in recorded["launches"]:
            assert launch["threads"] <= launch["max_threads"]
    d = _cpu.depthwise_conv2d_geometry(shape, (3, 3), 2, (1, 1), (1, 1), "same")
    kernel = fake((3, 3, c, 2), np.float32)
    dy = fake(d.output_shape, np.float32)
    for name, args in [("depthwise_conv2d_forward", (d, x, kernel, None, dy)),
                       ("depthwise_conv2d_backward_input", (d, dy, kernel, x)),
                       ("depthwise_conv2d_backward_kernel", (d, x, dy, kernel))]:
        recorded = launches(name, *args, variant=variant)
        assert all(launch["threads"] <= launch["max_threads"] for launch in recorded["launches"])


def test_plan_of_an_impossible_grid_is_refused_with_the_kernel_name():
    """A reference grid-stride loop never exceeds its cap; a tiled conv whose Cout tiles
    exceed 65535 along grid y cannot launch and must say so instead of launching wrong."""
    cout = 64 * 65536
    g = _cpu.conv2d_geometry((1, 1, 1, 1), (1, 1), cout, (1, 1), (1, 1), "valid")
    x, kernel, y = fake((1, 1, 1, 1), np.float32), fake((1, 1, 1, cout), np.float32), fake((1, 1, 1, cout), np.float32)
    with pytest.raises(RuntimeError, match="conv2d_forward_tiled: invalid launch plan: grid y/z"):
        plan.conv2d_forward(g, x, kernel, None, y, variant="fast")
    plan.conv2d_forward(g, x, kernel, None, y, variant="reference")
    assert plan.launches()["launches"][0]["grid"][0] == GRID_STRIDE_CAP
