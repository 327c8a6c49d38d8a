"""convlab.utils.profile: FLOP counts against independent counts (PyTorch's FlopCounterMode,
an explicit loop), shapes against model.summary(), per-layer times against the whole step."""

import io

import numpy as np
import pytest

import convlab
from convlab import layers
from convlab.models import Model, Sequential
from convlab.profiling import _read_cpuinfo, _simd_lanes, machine_peaks, measure_memory_bandwidth

# Peaks given, so that no test waits for the 256 MiB bandwidth measurement.
PEAKS = dict(cores=2, simd_lanes=16, fma_units=2, clock_ghz=2.5, memory_bandwidth_gbs=20.0)


def _profile(model, x, **kwargs):
    options = dict(repeats=1, warmup=0, file=None, **PEAKS)
    options.update(kwargs)
    return convlab.utils.profile(model, x, **options)


def _by_name(rows):
    return {row["name"]: row for row in rows}


def _conv_zoo():
    """One of each counted layer kind, small; the first conv reads the model input (no input gradient)."""
    inputs = layers.Input(shape=(9, 9, 3))
    x = layers.Conv2D(4, 3, strides=2, name="conv")(inputs)                                  # 4x4x4
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(x)   # 4x4x8
    x = layers.SeparableConv2D(5, 3, padding="same", name="separable")(x)                    # 4x4x5
    x = layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="transpose")(x)         # 8x8x3
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(6, name="dense")(x)
    return Model(inputs, outputs)


def test_conv_and_dense_flops_match_torch_flop_counter():
    """Forward and backward FLOPs of every conv-like and Dense layer, against PyTorch counting
    the same operations on tensors of the same shapes (inputs that need a gradient where
    convlab's backward computes one)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    model = _conv_zoo()
    rows = _by_name(_profile(model, np.zeros((2, 9, 9, 3), np.float32)))
    F = torch.nn.functional

    def counted(make_inputs, forward):
        tensors = make_inputs()
        with FlopCounterMode(display=False) as forward_counter:
            out = forward(*tensors)
        with FlopCounterMode(display=False) as backward_counter:
            out.backward(torch.ones_like(out))
        return forward_counter.get_total_flops(), backward_counter.get_total_flops()

    def depthwise(x, w, multiplier):
        # One ungrouped conv per input channel: PyTorch counts a grouped conv's kernel gradient
        # as if it were not grouped (groups times too much), but these it counts right.
        return torch.cat([F.conv2d(x[:, c:c + 1], w[c * multiplier:(c + 1) * multiplier], padding=1)
                          for c in range(x.shape[1])], dim=1)

    def weight(*shape):
        return torch.zeros(shape, requires_grad=True)

    def activation(*shape, needs_grad=True):
        return torch.zeros(shape, requires_grad=needs_grad)

    cases = {
        "conv": counted(lambda: (activation(2, 3, 9, 9, needs_grad=False), weight(4, 3, 3, 3), weight(4)),
                        lambda x, w, b: F.conv2d(x, w, b, stride=2)),
        "depthwise": counted(lambda: (activation(2, 4, 4, 4), weight(8, 1, 3, 3), weight(8)),
                             lambda x, w, b: depthwise(x, w, 2) + b[:, None, None]),
        "separable": counted(lambda: (activation(2, 8, 4, 4), weight(8, 1, 3, 3), weight(5, 8, 1, 1), weight(5)),
                             lambda x, dw, pw, b: F.conv2d(depthwise(x, dw, 1), pw, b)),
        "transpose": counted(lambda: (activation(2, 5, 4, 4), weight(5, 3, 3, 3), weight(3)),
                             lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)),
        "dense": counted(lambda: (activation(2, 192), weight(6, 192), weight(6)), F.linear),
    }
    assert rows["transpose"]["output_shape"] == "(None, 8, 8, 3)"  # the torch shapes above are right
    for name, (forward, backward) in cases.items():
        assert rows[name]["flops"] == forward, name
        assert rows[name]["backward_flops"] == backward, name
    assert rows["flatten"]["flops"] == 0 and rows["flatten"]["bytes"] == 0


def test_flops_match_explicit_loops():
    """Conv2D, MaxPooling2D and Dense counted by running them as plain loops that count their
    multiply-adds and comparisons (and must compute the layers' outputs, so they are the layers)."""
    rng = np.random.default_rng(0)
    model = Sequential([layers.Input(shape=(6, 7, 2)), layers.Conv2D(3, (3, 2), name="conv"),
                        layers.MaxPooling2D((2, 3), name="pool"), layers.Flatten(name="flatten"),
                        layers.Dense(4, name="dense")])
    x = rng.standard_normal((2, 6, 7, 2)).astype(np.float32)
    rows = _by_name(_profile(model, x, training=False))

    kernel, bias = (w.numpy() for w in model.get_layer("conv").weights)
    y = np.zeros((2, 4, 6, 3))
    multiply_adds = 0
    for n in range(2):
        for i in range(4):
            for j in range(6):
                for c in range(3):
                    total = bias[c]
                    for di in range(3):
                        for dj in range(2):
                            for k in range(2):
                                total += x[n, i + di, j + dj, k] * kernel[di, dj, k, c]
                                multiply_adds += 1
                    y[n, i, j, c] = total
    np.testing.assert_allclose(y, model.layers[0](x).numpy(), rtol=1e-5, atol=1e-5)
    assert rows["conv"]["flops"] == 2 * multiply_adds

    pooled = np.full((2, 2, 2, 3), -np.inf)
    compares = 0
    for n, i, j, c in np.ndindex(pooled.shape):
        for di in range(2):
            for dj in range(3):
                pooled[n, i, j, c] = max(pooled[n, i, j, c], y[n, 2 * i + di, 3 * j + dj, c])
                compares += 1
    np.testing.assert_allclose(pooled, model.layers[1](y.astype(np.float32)).numpy(), rtol=1e-6)
    assert rows["pool"]["flops"] == compares

    dense_kernel = model.get_layer("dense").kernel.numpy()
    dense_multiply_adds = sum(1 for _ in np.ndindex(2, dense_kernel.shape[0], dense_kernel.shape[1]))
    assert rows["dense"]["flops"] == 2 * dense_multiply_adds


def test_bytes_are_inputs_weights_and_outputs_once():
    """A layer's bytes against the nbytes of the arrays it really reads and writes."""
    model = convlab.applications.mnist_convnet()
    x = np.zeros((3, 28, 28, 1), np.float32)
    rows = _by_name(_profile(model, x, training=False))
    layer = model.layers[1]  # the first Conv2D
    y = layer(x).numpy()
    expected = x.nbytes + sum(w.numpy().nbytes for w in layer.weights) + y.nbytes
    assert rows[layer.name]["bytes"] == expected
    assert rows[layer.name]["intensity"] == pytest.approx(rows[layer.name]["flops"] / expected)


@pytest.fixture(scope="module")
def mnist_training():
    """One profile of a training step of the MNIST convnet (functional), shared by the tests below."""
    model = convlab.applications.mnist_convnet()
    out = io.StringIO()
    rows = _profile(model, np.random.default_rng(1).random((4, 28, 28, 1), np.float32), repeats=5, file=out)
    return model, rows, out.getvalue()


def _check_rows_follow_summary(model, rows):
    lines = []
    model.summary(print_fn=lines.append)
    layer_rows = rows[:-2]
    summary_layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    assert [row["name"] for row in layer_rows] == [layer.name for layer in summary_layers]
    for row in layer_rows:
        line = next(text for text in lines if text.startswith(f" {row['name']} ({row['class']})"))
        assert row["output_shape"].startswith("(None") and row["output_shape"] in line, (row, line)
    assert [row["name"] for row in rows[-2:]] == ["(other)", "total"]
    times = [row["time_s"] for row in rows[:-1]]
    assert rows[-1]["time_s"] == pytest.approx(sum(times), rel=1e-9)
    assert sum(row["share"] for row in rows[:-1]) == pytest.approx(1.0)


def test_functional_model_rows_follow_summary_and_add_up_to_the_step(mnist_training):
    """A row per layer with model.summary()'s output shape; the per-layer medians add up to the
    median step timed without the profiler to within a factor of 2: a loose bound, since timing
    on a shared CI machine is noisy (on a quiet one they agree to a few percent); it catches a
    profiler that misses or double-counts whole layers."""
    model, rows, printed = mnist_training
    _check_rows_follow_summary(model, rows)
    total = rows[-1]
    for timed in (total["time_s"], total["instrumented_step_s"]):
        assert 0.5 < timed / total["measured_step_s"] < 2.0, (timed, total["measured_step_s"])
    assert "bwd ms" in printed and "whole step without the profiler" in printed
    assert all("call" not in layer.__dict__ for layer in model.layers)  # the classes' call again


def test_sequential_model():
    model = convlab.applications.mnist_convnet_first_edition_base()
    rows = _profile(model, np.zeros((2, 28, 28, 1), np.float32), repeats=1)
    _check_rows_follow_summary(model, rows)
    # With one timed step the rows are that step: they cover its wall time (less the profiler's
    # own bookkeeping) to rounding.
    assert rows[-1]["time_s"] == pytest.approx(rows[-1]["instrumented_step_s"], rel=1e-6)


def test_mini_xception_and_its_batch_norm_statistics_are_left_alone():
    """Residual adds and BatchNormalization: the training-mode forwards update the moving
    statistics, which the profile puts back."""
    model = convlab.applications.mini_xception(input_shape=(64, 64, 3))
    before = [w.copy() for w in model.get_weights()]
    rows = _profile(model, np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32))
    _check_rows_follow_summary(model, rows)
    assert rows[-1]["time_s"] == pytest.approx(rows[-1]["instrumented_step_s"], rel=1e-6)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The add of a block's residual takes the sum of the gradients of both branches' backwards.
    assert all(row["backward_s"] > 0 for row in rows[:-2] if row["class"] in ("Add", "SeparableConv2D"))


def test_training_false_skips_backward(mnist_training):
    model, trained, _ = mnist_training
    out = io.StringIO()
    rows = _profile(model, np.zeros((2, 28, 28, 1), np.float32), training=False, file=out)
    assert all(row["backward_s"] is None and row["backward_flops"] is None for row in rows)
    assert all(row["time_s"] == row["forward_s"] for row in rows)
    assert "bwd ms" not in out.getvalue()
    trained = _by_name(trained)
    # The first conv reads the input (no input gradient): its backward is the kernel gradient only;
    # the Dense computes both.
    conv = trained[model.layers[1].name]
    assert conv["backward_flops"] == conv["flops"]
    dense = trained[model.layers[-1].name]
    assert dense["backward_flops"] == 2 * dense["flops"]


def test_rates_are_work_over_time_against_peaks(mnist_training):
    _, rows, _ = mnist_training
    peak = 2 * 16 * 2 * 2 * 2.5  # GFLOP/s from PEAKS
    for row in rows[:-2]:
        if row["flops"]:
            assert row["forward_gflops"] == pytest.approx(row["flops"] / row["forward_s"] / 1e9)
            assert row["backward_gbs"] == pytest.approx(row["backward_bytes"] / row["backward_s"] / 1e9)
            assert row["forward_flops_fraction"] == pytest.approx(row["forward_gflops"] / peak)
            assert row["forward_bandwidth_fraction"] == pytest.approx(row["forward_gbs"] / 20.0)
    assert rows[-1]["peak_gflops"] == pytest.approx(peak)


def test_peak_formula_matches_published_per_core_figures():
    # Haswell (AVX2, two FMA units): 32 single-precision FLOPs per cycle per core; Skylake-SP
    # with two AVX-512 FMA units: 64 (Intel's optimization manual).
    haswell = machine_peaks(cores=1, simd_lanes=8, fma_units=2, clock_ghz=1.0, memory_bandwidth_gbs=1.0)
    skylake = machine_peaks(cores=1, simd_lanes=16, fma_units=2, clock_ghz=1.0, memory_bandwidth_gbs=1.0)
    assert haswell.flops == 32e9 and skylake.flops == 64e9
    assert skylake.ridge == pytest.approx(64.0)


def test_simd_lanes_from_cpuinfo_flags(tmp_path):
    def lanes(flags):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: {flags}\ncpu MHz\t\t: 2000.0\n\n")
        return _simd_lanes(_read_cpuinfo(str(path)))[0]

    assert lanes("fpu sse sse2 avx fma avx2 avx512f avx512bw") == 16
    assert lanes("fpu sse sse2 avx fma avx2") == 8
    assert lanes("fpu sse sse2") == 4
    assert lanes("fp asimd") is None


def test_memory_bandwidth_is_measured_once_and_plausible():
    import time

    nbytes = 32 * 2**20
    first = measure_memory_bandwidth(nbytes)
    source = np.ones(nbytes // 8)
    target = np.empty_like(source)
    np.copyto(target, source)
    start = time.perf_counter()
    np.copyto(target, source)
    one_copy = 2 * nbytes / (time.perf_counter() - start)
    assert first > 0.3 * one_copy  # best of several copies: not far below any single one
    assert measure_memory_bandwidth(nbytes) is first  # the cached value, not a new measurement


def test_bad_arguments_name_what_was_expected():
    model = convlab.applications.mnist_convnet()
    x = np.zeros((1, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        _profile(model, x, repeats=0)
    with pytest.raises(ValueError, match="warmup must be an int >= 0, got -1"):
        _profile(model, x, warmup=-1)
    with pytest.raises(ValueError, match="training must be True or False"):
        _profile(model, x, training="yes")
    with pytest.raises(ValueError, match="takes 1 input"):
        _profile(model, [x, x])
    with pytest.raises(ValueError, match="must be a batch"):
        _profile(model, np.zeros((0, 28, 28, 1), np.float32))
    with pytest.raises(TypeError, match="must be a convlab Model"):
        _profile(layers.Dense(3), x)
    with pytest.raises(ValueError, match="clock_ghz must be a positive number"):
        _profile(model, x, clock_ghz=-1.0)
    with pytest.raises(ValueError, match="no layer graph"):
        _profile(Sequential([layers.Dense(3)]), x)
