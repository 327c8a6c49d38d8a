"""Whole models on the CPU, convlab against the same model in plain PyTorch.

The MNIST convnet (batch 64) and the mini Xception (180x180x3, batch 16, no augmentation):
one training step (forward, loss, backward, RMSprop update) and one predict of a batch,
float32, PyTorch on channels-last tensors (NHWC memory, as convlab) with as many threads as
convlab. Both models start from the same weights. Then, each in a fresh process, the peak
memory a training step adds, and the step with 1 and 2 threads (convlab's OpenMP thread
count is fixed when its runtime starts, so every thread count gets its own process).

    PYTHONPATH=python python -m pytest benches/test_bench_models.py -q

CONVLAB_BENCH_ROUNDS sets the timed rounds of the side-by-side cases (default 5),
CONVLAB_BENCH_SCALING_STEPS the timed steps in each thread-scaling process (default 3).
This file is also the script those processes run:

    PYTHONPATH=python python benches/test_bench_models.py time convlab mini_xception 2
    PYTHONPATH=python python benches/test_bench_models.py memory torch mnist_convnet
"""

import gc
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

import convlab
from convlab import applications

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # the benches skip below; the script needs torch only for "torch" runs
    torch = None

# name -> (builder, input shape, batch, loss, number of classes)
MODELS = {
    "mnist_convnet": (lambda shape: applications.mnist_convnet(), (28, 28, 1), 64,
                      "sparse_categorical_crossentropy", 10),
    "mini_xception": (lambda shape: applications.mini_xception(input_shape=shape), (180, 180, 3), 16,
                      "binary_crossentropy", 1),
}
KERAS_BN_MOMENTUM, KERAS_BN_EPSILON = 0.99, 1e-3
EPSILON = 1e-7  # Keras' clip of probabilities before the log, and RMSprop's epsilon


# --------------------------------------------------------------------------- the PyTorch models


def keras_same_padding(size, kernel, stride):
    """(before, after) padding of Keras' "same": output ceil(size / stride), the smaller half before."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def keras_same_max_pool(x, kernel, stride):
    """Keras' MaxPooling2D(kernel, stride, "same") on an NCHW tensor. PyTorch pads symmetrically;
    one more pixel after than before is a window running off the end, which ceil_mode allows."""
    (top, bottom), (left, right) = (keras_same_padding(n, kernel, stride) for n in x.shape[2:])
    if (top, left) == (bottom, right):
        return F.max_pool2d(x, kernel, stride, padding=(top, left))
    if (bottom - top, right - left) == (1, 1):
        return F.max_pool2d(x, kernel, stride, padding=(top, left), ceil_mode=True)
    return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-float("inf")), kernel, stride)


if torch is not None:

    class TorchMnistConvnet(nn.Module):
        """convlab.applications.mnist_convnet in PyTorch: Conv 32/64/128 3x3 relu, two max pools,
        Flatten (in NHWC order, as Keras flattens), Dense 10 softmax."""

        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1, self.conv2, self.conv3 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3), nn.Conv2d(64, 128, 3)
            self.dense = nn.Linear(3 * 3 * 128, num_classes)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = F.relu(self.conv3(x))
            x = x.permute(0, 2, 3, 1).flatten(1)  # a view of channels-last memory: no copy
            return F.softmax(self.dense(x), dim=1)

    class SeparableConv2d(nn.Module):
        """Keras' SeparableConv2D(filters, 3, padding="same", use_bias=False): a depthwise 3x3
        (groups = channels) then a pointwise 1x1, neither with a bias."""

        def __init__(self, in_channels, filters):
            super().__init__()
            self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
            self.pointwise = nn.Conv2d(in_channels, filters, 1, bias=False)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    def keras_batch_norm(channels):
        # Keras' moving = momentum * moving + (1 - momentum) * batch; PyTorch's momentum is the 1 - momentum.
        return nn.BatchNorm2d(channels, eps=KERAS_BN_EPSILON, momentum=1 - KERAS_BN_MOMENTUM)

    class TorchMiniXception(nn.Module):
        """convlab.applications.mini_xception (no augmentation) in PyTorch: Rescaling(1/255),
        Conv(32, 5, no bias); per block BN, relu, SepConv; BN, relu, SepConv; max pool 3/2 "same";
        a strided 1x1 conv residual (no bias), added; GAP, Dropout(0.5), Dense(1, sigmoid)."""

        def __init__(self, block_sizes=(32, 64, 128, 256, 512)):
            super().__init__()
            self.stem = nn.Conv2d(3, 32, 5, bias=False)
            self.blocks = nn.ModuleList()
            channels = 32
            for size in block_sizes:
                self.blocks.append(nn.ModuleDict({
                    "bn1": keras_batch_norm(channels), "sep1": SeparableConv2d(channels, size),
                    "bn2": keras_batch_norm(size), "sep2": SeparableConv2d(size, size),
                    "residual": nn.Conv2d(channels, size, 1, stride=2, bias=False),
                }))
                channels = size
            self.dropout = nn.Dropout(0.5)
            self.dense = nn.Linear(channels, 1)

        def forward(self, x):
            x = self.stem(x * (1.0 / 255))
            for block in self.blocks:
                residual = x
                x = block["sep1"](F.relu(block["bn1"](x)))
                x = block["sep2"](F.relu(block["bn2"](x)))
                x = keras_same_max_pool(x, 3, 2)
                x = x + block["residual"](residual)  # a 1x1 window never needs "same" padding
            x = self.dropout(x.mean(dim=(2, 3)))
            return torch.sigmoid(self.dense(x))

    TORCH_MODELS = {"mnist_convnet": TorchMnistConvnet, "mini_xception": TorchMiniXception}


def _torch_conv_weight(kernel):
    """Keras' (kh, kw, cin, cout) as PyTorch's (cout, cin, kh, kw)."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1))))


def copy_weights(model, torch_model):
    """Give `torch_model` the weights of the convlab `model` (one of MODELS), layer by layer."""
    from convlab import layers

    convlab_layers = [layer for layer in model.layers if layer.weights]
    with torch.no_grad():
        if isinstance(torch_model, TorchMnistConvnet):
            targets = [torch_model.conv1, torch_model.conv2, torch_model.conv3, torch_model.dense]
            if len(convlab_layers) != len(targets):
                raise ValueError(f"copy_weights: the convlab model has {len(convlab_layers)} layers with weights, "
                                 f"the PyTorch MNIST convnet {len(targets)}")
            for layer, target in zip(convlab_layers, targets):
                kernel = layer.kernel.numpy()
                target.weight.copy_(_torch_conv_weight(kernel) if kernel.ndim == 4 else torch.from_numpy(kernel.T))
                target.bias.copy_(torch.from_numpy(layer.bias.numpy()))
            return torch_model
        # The mini Xception: the stem conv, then per block the layers in the order the model calls them.
        convs = [layer for layer in convlab_layers if isinstance(layer, layers.Conv2D)]
        norms = [layer for layer in convlab_layers if isinstance(layer, layers.BatchNormalization)]
        separables = [layer for layer in convlab_layers if isinstance(layer, layers.SeparableConv2D)]
        torch_model.stem.weight.copy_(_torch_conv_weight(convs[0].kernel.numpy()))
        for index, block in enumerate(torch_model.blocks):
            for name, norm in (("bn1", norms[2 * index]), ("bn2", norms[2 * index + 1])):
                for target, variable in zip(("weight", "bias", "running_mean", "running_var"),
                                            (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)):
                    getattr(block[name], target).copy_(torch.from_numpy(variable.numpy()))
            for name, separable in (("sep1", separables[2 * index]), ("sep2", separables[2 * index + 1])):
                depthwise = separable.depthwise_kernel.numpy()  # (3, 3, cin, 1)
                block[name].depthwise.weight.copy_(torch.from_numpy(
                    np.ascontiguousarray(np.transpose(depthwise, (2, 3, 0, 1)))))
                block[name].pointwise.weight.copy_(_torch_conv_weight(separable.pointwise_kernel.numpy()))
            block["residual"].weight.copy_(_torch_conv_weight(convs[index + 1].kernel.numpy()))
        dense = convlab_layers[-1]
        torch_model.dense.weight.copy_(torch.from_numpy(dense.kernel.numpy().T))
        torch_model.dense.bias.copy_(torch.from_numpy(dense.bias.numpy()))
    return torch_model


def torch_input(x):
    """An NCHW view of an NHWC array: channels-last memory, no copy."""
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def torch_loss(loss, probabilities, y):
    """The Keras losses from probabilities, as convlab computes them (clipped to [eps, 1 - eps])."""
    p = probabilities.clamp(EPSILON, 1 - EPSILON)
    if loss == "sparse_categorical_crossentropy":
        return F.nll_loss(torch.log(p), y)
    return F.binary_cross_entropy(p, y)


# --------------------------------------------------------------------------- one step of each framework


def make_case(name, framework, seed=0):
    """(train_step, predict) closures for model `name` in `framework`, on a fixed batch."""
    build, shape, batch, loss, classes = MODELS[name]
    rng = np.random.default_rng(seed)
    scale = 1.0 if name == "mnist_convnet" else 255.0  # the mini Xception rescales pixels itself
    x = (scale * rng.random((batch,) + shape)).astype(np.float32)
    y = rng.integers(0, 2 if classes == 1 else classes, batch)
    convlab.utils.set_seed(seed)
    model = build(shape)
    if framework == "convlab":
        model.compile(optimizer="rmsprop", loss=loss)
        y = y.astype(np.float32).reshape(batch, 1) if classes == 1 else y

        def train_step():
            return model.train_on_batch(x, y)

        def predict():
            return model.predict(x, batch_size=batch)

        return train_step, predict

    torch_model = copy_weights(model, TORCH_MODELS[name]()).to(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(torch_model.parameters(), lr=1e-3, alpha=0.9, eps=EPSILON)
    xt = torch_input(x)
    yt = torch.from_numpy(y.astype(np.float32).reshape(batch, 1) if classes == 1 else y)

    def train_step():
        torch_model.train()
        optimizer.zero_grad(set_to_none=True)
        value = torch_loss(loss, torch_model(xt), yt)
        value.backward()
        optimizer.step()
        return value.item()

    def predict():
        torch_model.eval()
        with torch.no_grad():
            return torch_model(xt).numpy()

    return train_step, predict


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def measure_memory(name, framework):
    """MiB a training step adds to the process's peak resident memory, after one warm-up step
    (the optimizer's slots and the first-call allocations are made by then)."""
    train_step, _ = make_case(name, framework)
    train_step()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak, to the current resident size (Linux >= 4.0)
        before = _status_kib("VmRSS")
        train_step()
        return {"peak_growth_mib": (_status_kib("VmHWM") - before) / 1024, "how": "VmHWM"}
    except OSError:
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        train_step()
        return {"peak_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                "how": "ru_maxrss"}


def measure_step_time(name, framework, steps):
    """Median seconds of a training step, after one warm-up step."""
    train_step, _ = make_case(name, framework)
    train_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times)}


def run_in_subprocess(*arguments, threads=None):
    """This file as a script in a fresh process (threads: OMP_NUM_THREADS and torch's count)."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    completed = subprocess.run([sys.executable, os.path.abspath(__file__), *map(str, arguments)],
                               capture_output=True, text=True, env=env, timeout=1800)
    if completed.returncode != 0:
        raise RuntimeError(f"the bench process {arguments} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv):
    usage = ("usage: test_bench_models.py time {convlab,torch} MODEL THREADS [STEPS] | "
             "memory {convlab,torch} MODEL")
    if len(argv) < 3 or argv[0] not in ("time", "memory") or argv[1] not in ("convlab", "torch") \
            or argv[2] not in MODELS:
        raise SystemExit(f"{usage}; models: {', '.join(MODELS)}; got {argv}")
    what, framework, name = argv[:3]
    if framework == "torch":
        if torch is None:
            raise SystemExit("PyTorch is not installed")
        from convlab import _cpu

        torch.set_num_threads(_cpu.num_threads())  # OMP_NUM_THREADS when set, as for convlab
    if what == "memory":
        result = measure_memory(name, framework)
    else:
        result = measure_step_time(name, framework, int(argv[4]) if len(argv) > 4 else 3)
    from convlab import _cpu

    result["threads"] = _cpu.num_threads() if framework == "convlab" else torch.get_num_threads()
    print(json.dumps(result))


# --------------------------------------------------------------------------- the benches

if torch is None and __name__ != "__main__":
    pytest.skip("the model benches compare against PyTorch, which is not installed", allow_module_level=True)

CASES = {name: f"{name} (batch {MODELS[name][2]})" for name in MODELS}
SCALING_STEPS = int(os.environ.get("CONVLAB_BENCH_SCALING_STEPS", 3))


@pytest.fixture(scope="module", autouse=True)
def same_threads():
    from convlab import _cpu

    torch.set_num_threads(_cpu.num_threads())


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("name", list(MODELS))
def test_train_step(record, name, impl):
    train_step, _ = make_case(name, impl)
    record(f"model {CASES[name]} training step", impl, train_step)


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("name", list(MODELS))
def test_predict(record, name, impl):
    _, predict = make_case(name, impl)
    record(f"model {CASES[name]} predict", impl, predict)


@pytest.mark.parametrize("name", list(MODELS))
def test_peak_memory_of_a_training_step(record_value, name):
    title = "Peak resident memory a training step adds (MiB; a fresh process each, after one warm-up step)"
    for impl in ("convlab", "torch"):
        result = run_in_subprocess("memory", impl, name)
        record_value(title, CASES[name], f"{impl} MiB", f"{result['peak_growth_mib']:.1f}")


@pytest.mark.parametrize("name", list(MODELS))
def test_thread_scaling_of_a_training_step(record_value, name):
    title = f"Training step ms by thread count (a fresh process each, median of {SCALING_STEPS} steps)"
    for impl in ("convlab", "torch"):
        times = {}
        for threads in (1, 2):
            result = run_in_subprocess("time", impl, name, threads, SCALING_STEPS, threads=threads)
            assert result["threads"] == threads, result
            times[threads] = result["step_s"]
            record_value(title, CASES[name], f"{impl} {threads} thr", f"{1e3 * result['step_s']:.1f}")
        record_value(title, CASES[name], f"{impl} 1/2 thr", f"{times[1] / times[2]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
