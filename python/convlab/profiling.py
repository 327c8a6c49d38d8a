"""Where a model's time goes: a per-layer roofline table of one step.

    rows = convlab.utils.profile(model, x)                   # forward + backward of a training step
    rows = convlab.utils.profile(model, x, training=False)   # inference: forward only

For every layer of a functional or Sequential model, `profile` prints (and returns as a list
of dicts) the work the layer does (FLOPs), the memory traffic it needs at least (bytes), the
measured time of its forward and backward, and what that makes per second, set against the
machine's peaks. A layer whose FLOPs per byte (its arithmetic intensity) is below the
machine's ridge point (peak FLOP/s / peak bytes/s) cannot reach the FLOP peak even with
perfect kernels: memory bandwidth is its limit. That is the roofline model.

The cost model (what the FLOP and byte columns count)
-----------------------------------------------------
One multiply-add counts as 2 FLOPs. N is the batch, OH x OW the output map, H x W the input
map, KH x KW the kernel or pooling window, Cin / Cout the channels, M the depth multiplier.

    Conv2D                    2 * N*OH*OW * KH*KW * Cin * Cout
    Conv2DTranspose           2 * N*H*W * KH*KW * Cin * Cout      (each input pixel is scattered)
    DepthwiseConv2D           2 * N*OH*OW * KH*KW * Cin * M
    SeparableConv2D           the depthwise count + 2 * N*OH*OW * Cin*M * Cout (the 1x1 pointwise)
    Dense                     2 * rows * in * units               (rows: every axis but the last)
    MaxPooling2D, AveragePooling2D   N*OH*OW*C * KH*KW            (one compare or add per window
                              position, padded positions of a "same" window included)
    GlobalAverage/MaxPooling2D       N*H*W*C
    BatchNormalization        2 per element (x * scale + shift); in training 5 (the batch mean adds
                              1, the variance 2 more)
    Activation, ReLU          1 per element, whatever the function
    Rescaling                 2 per element (x * scale + offset)
    Add, Multiply             (inputs - 1) per output element
    Dropout                   1 per element in training (the masked scale), 0 in inference
    ZeroPadding2D, Cropping2D, UpSampling2D (nearest), Concatenate   0 (data movement only)
    Flatten, Reshape          0 FLOPs and 0 bytes: a reshape of a contiguous array is a view
    any other layer           FLOPs unknown ("-"), bytes as below

Bias additions and the activations fused into Conv2D/Dense are not counted (at most one
FLOP per output, against KH*KW*Cin multiply-adds), as PyTorch's FLOP counter does not count
them either.

Bytes are the least traffic a layer can get away with: every input, every weight and every
output read or written once, at the layer's dtype (4 bytes for float32). Caches cannot do
better across a layer boundary once the activations outgrow them; a kernel that re-reads its
input does worse.

Backward: the forward count once per gradient the backward computes, which is the input's
(when anything before the layer needs it: the first layer of a model, or one after a
Rescaling, computes none) and the weights' (when the layer has trainable weights). A conv
in the middle of a net so costs twice its forward, as it does in PyTorch's counter. Its
bytes: the output gradient, the inputs and the weights read, one gradient per input and per
trainable weight written.

The machine's peaks
-------------------
FP32 peak = cores x SIMD lanes x FMA units x 2 FLOPs per FMA x clock:
  - cores: the physical cores this process may run on, at most convlab's thread count
    (OpenMP's, convlab._cpu.num_threads());
  - SIMD lanes: 16 with AVX-512 (the avx512f flag of /proc/cpuinfo), 8 with AVX2, 4 with SSE;
  - FMA units per core: 2 (most server cores since Haswell; give fma_units=1 for a core with one);
  - clock: the maximum frequency the kernel reports (cpufreq's cpuinfo_max_freq), else the
    highest "cpu MHz" in /proc/cpuinfo.
It is an upper bound: no real kernel issues two full-width FMAs on every core in every cycle,
and heavy AVX-512 use lowers the clock on many parts. Every term can be given instead
(cores=, simd_lanes=, fma_units=, clock_ghz=).

Memory bandwidth is measured, once per process: the best of a few numpy copies of a 256 MiB
buffer (larger than any last-level cache), counting the bytes read plus the bytes written.
A numpy copy runs on one thread, so on a many-core server it understates what all cores
together can pull; give memory_bandwidth_gbs= for a better number (a STREAM triad, say).

How times are taken
-------------------
`repeats` instrumented steps (after `warmup` ones) are timed, and every row reports the
median over them. The forward of a layer is the time from the end of the previous layer's
call to the end of its own (so the model's own loop is charged to the layer it runs). In the
backward, every autograd Function is charged to the layer whose call created it (found by
walking the graph back from the layer's outputs to its inputs), and a Function's time runs
from the end of the previous Function's backward to the end of its own, so adding up the
gradients that flow into it is included. What no layer owns (the graph walk before the
first Function, freeing the graph after the last) is the "(other)" row. The profiler wraps
the layers' `call` and the recorded Functions' `backward` on the instances, for the steps it
times only: with no profile running nothing is changed and nothing costs anything.

Alongside, the same number of steps run without any instrumentation; their median is the
"whole step" the rows must add up to (the table prints both, and the difference).
A training step here is the model's forward with training=True and the backward of the sum
of its outputs to its trainable weights: the loss and the optimizer update, a few
elementwise operations, are left out. BatchNormalization's moving statistics, which
training-mode forwards update, are put back afterwards.
"""

import math
import os
import statistics
import sys
import time

import numpy as np

from .autograd import Tensor, grad, no_grad

__all__ = ["profile", "machine_peaks", "measure_memory_bandwidth", "layer_cost", "MachinePeaks"]

OTHER = "(other)"
TOTAL = "total"


# --------------------------------------------------------------------------- machine peaks


class MachinePeaks:
    """The FP32 FMA peak (FLOP/s) and the memory bandwidth (bytes/s), with how they were found."""

    def __init__(self, cores, simd_lanes, fma_units, clock_ghz, memory_bandwidth, isa="given",
                 bandwidth_source="given"):
        self.cores, self.simd_lanes, self.fma_units = cores, simd_lanes, fma_units
        self.clock_ghz, self.isa = clock_ghz, isa
        self.flops = cores * simd_lanes * fma_units * 2 * clock_ghz * 1e9
        self.memory_bandwidth = memory_bandwidth
        self.bandwidth_source = bandwidth_source

    @property
    def ridge(self):
        """FLOPs per byte above which a kernel can be compute-bound."""
        return self.flops / self.memory_bandwidth

    def describe(self):
        return [
            f"FP32 peak {self.flops / 1e9:.1f} GFLOP/s = {self.cores} core{'s' if self.cores != 1 else ''} x "
            f"{self.simd_lanes} lanes ({self.isa}) "
            f"x {self.fma_units} FMA units x 2 FLOP/FMA x {self.clock_ghz:.2f} GHz (an upper bound)",
            f"memory {self.memory_bandwidth / 1e9:.1f} GB/s ({self.bandwidth_source}); "
            f"ridge point {self.ridge:.1f} FLOP/byte",
        ]

    def __repr__(self):
        return (f"MachinePeaks(flops={self.flops / 1e9:.1f} GFLOP/s, "
                f"memory_bandwidth={self.memory_bandwidth / 1e9:.1f} GB/s)")


def _read_cpuinfo(path="/proc/cpuinfo"):
    """One dict per logical CPU of /proc/cpuinfo (empty where the file cannot be read)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                entry[key.strip()] = value.strip()
        if entry:
            cpus.append(entry)
    return cpus


def _simd_lanes(cpus):
    flags = set(cpus[0].get("flags", "").split()) if cpus else set()
    for flag, lanes, isa in (("avx512f", 16, "AVX-512"), ("avx2", 8, "AVX2"), ("sse2", 4, "SSE2")):
        if flag in flags:
            return lanes, isa
    return None, None


def _clock_ghz(cpus):
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read().strip()) / 1e6, "cpufreq max"  # kHz
    except (OSError, ValueError):
        pass
    mhz = [float(c["cpu MHz"]) for c in cpus if "cpu MHz" in c]
    return (max(mhz) / 1e3, "cpu MHz") if mhz else (None, None)


def _physical_cores(cpus):
    """The physical cores among the logical CPUs this process may run on."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        try:
            index = int(cpu.get("processor", -1))
        except ValueError:
            continue
        if index in allowed:
            cores.add((cpu.get("physical id", "0"), cpu.get("core id", str(index))))
    return len(cores) or len(allowed)


def _positive(name, value, integer=False):
    number_types = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, number_types) or not value > 0 or not math.isfinite(value):
        kind = "a positive int" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


_bandwidth_cache = {}


def measure_memory_bandwidth(nbytes=256 * 2**20, repeats=5):
    """Bytes per second of a numpy copy of an `nbytes` buffer: best of `repeats`, read + write.

    Measured once per process and size, then answered from a cache. The buffer should be
    larger than the last-level cache (256 MiB is, on any CPU of today), or it measures the cache.
    """
    nbytes = int(_positive("nbytes", nbytes, integer=True))
    repeats = int(_positive("repeats", repeats, integer=True))
    if nbytes not in _bandwidth_cache:
        source = np.ones(max(nbytes // 8, 1), dtype=np.float64)
        target = np.empty_like(source)
        np.copyto(target, source)  # touch every page once, outside the timing
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            np.copyto(target, source)
            best = min(best, time.perf_counter() - start)
        _bandwidth_cache[nbytes] = 2 * source.nbytes / best
    return _bandwidth_cache[nbytes]


def machine_peaks(cores=None, simd_lanes=None, fma_units=2, clock_ghz=None, memory_bandwidth_gbs=None):
    """The peaks the profile compares against; any term not given is read from the machine."""
    cpus = _read_cpuinfo()
    isa = "given"
    if simd_lanes is None:
        simd_lanes, isa = _simd_lanes(cpus)
        if simd_lanes is None:
            raise ValueError("simd_lanes: no avx512f, avx2 or sse2 flag in /proc/cpuinfo; give simd_lanes= "
                             "(FP32 lanes per vector: 16 for AVX-512, 8 for AVX2, 4 for SSE or NEON)")
    simd_lanes = int(_positive("simd_lanes", simd_lanes, integer=True))
    if clock_ghz is None:
        clock_ghz, _ = _clock_ghz(cpus)
        if clock_ghz is None:
            raise ValueError("clock_ghz: no clock in /proc/cpuinfo or cpufreq; give clock_ghz= (e.g. 3.0)")
    clock_ghz = float(_positive("clock_ghz", clock_ghz))
    if cores is None:
        from . import _cpu

        cores = min(_physical_cores(cpus), int(_cpu.num_threads()))
    cores = int(_positive("cores", cores, integer=True))
    fma_units = int(_positive("fma_units", fma_units, integer=True))
    if memory_bandwidth_gbs is None:
        bandwidth, source = measure_memory_bandwidth(), "numpy copy of 256 MiB, one thread"
    else:
        bandwidth, source = float(_positive("memory_bandwidth_gbs", memory_bandwidth_gbs)) * 1e9, "given"
    return MachinePeaks(cores, simd_lanes, fma_units, clock_ghz, bandwidth, isa, source)


# --------------------------------------------------------------------------- the cost model


def _count(shape):
    return int(np.prod(shape, dtype=np.int64))


def _shapes(structure):
    if isinstance(structure, (list, tuple)):
        return [s for item in structure for s in _shapes(item)]
    return [tuple(structure.shape)]


def layer_cost(layer, input_shapes, output_shapes, training=False, input_grad=True):
    """(forward FLOPs or None, forward bytes, backward FLOPs or None, backward bytes) of one call.

    input_shapes / output_shapes: lists of concrete shapes (batch included). input_grad:
    whether the backward computes the gradient of the inputs. See the module's docstring
    for the formulas.
    """
    from . import layers as L

    x = input_shapes[0]
    y = output_shapes[0]
    out_elements = sum(_count(s) for s in output_shapes)
    in_elements = sum(_count(s) for s in input_shapes)
    itemsize = np.dtype(layer.dtype).itemsize
    weights = layer.weights
    weight_elements = sum(w.size for w in weights)
    trainable_elements = sum(w.size for w in layer.trainable_weights)
    moves_data = True

    if isinstance(layer, L.SeparableConv2D):
        kh, kw = layer.kernel_size
        depth = x[-1] * layer.depth_multiplier
        flops = 2 * _count(y[:-1]) * (kh * kw * depth + depth * y[-1])
    elif isinstance(layer, L.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        flops = 2 * _count(y[:-1]) * kh * kw * x[-1] * layer.depth_multiplier
    elif isinstance(layer, L.Conv2DTranspose):
        kh, kw = layer.kernel_size
        flops = 2 * _count(x[:-1]) * kh * kw * x[-1] * y[-1]
    elif isinstance(layer, L.Conv2D):
        kh, kw = layer.kernel_size
        flops = 2 * _count(y[:-1]) * kh * kw * x[-1] * y[-1]
    elif isinstance(layer, L.Dense):
        flops = 2 * _count(x[:-1]) * x[-1] * y[-1]
    elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        flops = out_elements * layer.pool_size[0] * layer.pool_size[1]
    elif isinstance(layer, L.GlobalAveragePooling2D):  # GlobalMaxPooling2D too
        flops = in_elements
    elif isinstance(layer, L.BatchNormalization):
        flops = (5 if training and layer.trainable else 2) * in_elements
    elif isinstance(layer, (L.Activation, L.ReLU)):
        flops = out_elements
    elif isinstance(layer, L.Rescaling):
        flops = 2 * out_elements
    elif isinstance(layer, (L.Add, L.Multiply)):
        flops = (len(input_shapes) - 1) * out_elements
    elif isinstance(layer, L.Dropout):
        flops = out_elements if training and layer.rate > 0 else 0
        moves_data = bool(flops)  # in inference the layer hands its input on
    elif isinstance(layer, (L.ZeroPadding2D, L.Cropping2D, L.Concatenate)) or (
            isinstance(layer, L.UpSampling2D) and layer.interpolation == "nearest"):
        flops = 0
    elif isinstance(layer, (L.Flatten, L.Reshape)):
        flops, moves_data = 0, False
    else:
        flops = None

    if not moves_data:
        return flops, 0, 0, 0
    forward_bytes = itemsize * (in_elements + weight_elements + out_elements)
    gradients = int(bool(input_grad)) + int(trainable_elements > 0)
    backward_flops = None if flops is None else flops * gradients
    if gradients == 0:
        return flops, forward_bytes, 0, 0
    backward_bytes = itemsize * (out_elements + in_elements + weight_elements
                                 + (in_elements if input_grad else 0) + trainable_elements)
    return flops, forward_bytes, backward_flops, backward_bytes


# --------------------------------------------------------------------------- instrumentation


def _flatten(structure):
    if isinstance(structure, (list, tuple)):
        return [t for item in structure for t in _flatten(item)]
    return [structure]


class _Recorder:
    """Times one instrumented step: the layers' calls, then the Functions' backwards."""

    def __init__(self, layer_names):
        self.layer_names = layer_names
        self.calls = {name: [] for name in layer_names}  # (input shapes, output shapes, input tracked)
        self.record_shapes = True
        self.reset()

    def reset(self):
        self.forward = dict.fromkeys(self.layer_names + [OTHER], 0.0)
        self.backward = dict.fromkeys(self.layer_names + [OTHER], 0.0)
        self.functions = []  # (Function, layer name), in the order the forward created them
        self.owned = set()
        self.excluded = 0.0  # the profiler's own time inside the forward, charged to no row

    # ---- forward

    def wrap_call(self, layer):
        original = layer.call
        name = layer.name
        clock = time.perf_counter

        def timed_call(*args, **kwargs):
            result = original(*args, **kwargs)
            end = clock()
            self.forward[name] += end - self.mark
            if self.record_shapes:
                inputs = [t for t in _flatten(args[0]) if isinstance(t, Tensor)]
                self.calls[name].append(([t.shape for t in inputs], _shapes(result),
                                         any(t.tracked for t in inputs)))
            self._claim(result, name)
            self.mark = clock()
            self.excluded += self.mark - end
            return result

        return timed_call

    def _claim(self, result, name):
        """Charge to `name` every Function between this call's outputs and what already has an owner."""
        stack = [t for t in _flatten(result) if isinstance(t, Tensor)]
        while stack:
            fn = stack.pop()._fn
            if fn is None or id(fn) in self.owned:
                continue
            self.owned.add(id(fn))
            self.functions.append((fn, name))
            stack.extend(t for t in fn.inputs if t is not None)

    # ---- backward

    def wrap_backwards(self):
        clock = time.perf_counter
        for fn, name in self.functions:
            original = fn.backward

            def timed_backward(gradient, original=original, name=name):
                start = clock()
                self.backward[self.last] += start - self.mark  # the previous one's gradients added up
                result = original(gradient)
                self.mark = clock()
                self.backward[name] += self.mark - start
                self.last = name
                return result

            fn.backward = timed_backward

    def unwrap_backwards(self):
        for fn, _ in self.functions:
            fn.__dict__.pop("backward", None)  # the class's own method shows through again
        self.functions = []
        self.owned = set()


# --------------------------------------------------------------------------- profile


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"profile: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _graph_layers(model):
    from .models import Model

    if not isinstance(model, Model):
        raise TypeError(f"profile: model must be a convlab Model or Sequential, got {type(model).__name__}")
    if not model._graph:
        raise ValueError(
            f"profile: model '{model.name}' has no layer graph to walk (a subclassed Model, or a Sequential "
            "that was never built); build it from Input(...) tensors or call it on data first"
        )
    layers, seen = [], set()
    for node in model._nodes:
        if id(node.layer) not in seen:
            seen.add(id(node.layer))
            layers.append(node.layer)
    return layers


def _output_shape_text(model, layer):
    """The output shape as model.summary() writes it."""
    nodes = [node for node in model._nodes if node.layer is layer]
    if len(nodes) != 1:
        return "multiple"
    shapes = [t.shape for t in nodes[0].outputs]
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def _rate(amount, seconds):
    return None if not amount or not seconds else amount / seconds  # no work (a view): no rate


def _fraction(rate, peak):
    return None if rate is None else rate / peak


def profile(model, x, training=True, repeats=5, warmup=1, file=sys.stdout, *, cores=None, simd_lanes=None,
            fma_units=2, clock_ghz=None, memory_bandwidth_gbs=None):
    """Time one step of `model` on the batch `x` layer by layer, print a roofline table, return its rows.

    training: True for a training step's forward (training=True) and backward (to the trainable
    weights); False for inference (forward only, no gradients recorded).
    repeats, warmup: timed steps (each row is the median over them) and untimed steps before.
    file: where the table goes (None: print nothing).
    cores, simd_lanes, fma_units, clock_ghz, memory_bandwidth_gbs: the machine's peaks, read from
    the machine where not given (see the module's docstring for the formula).

    Returns one dict per layer (in the order the model calls them), then an "(other)" row and a
    "total" row. Keys: name, class, output_shape, calls, flops, bytes, backward_flops,
    backward_bytes, intensity (FLOPs per byte), forward_s, backward_s, time_s, share (of the
    total time), forward_gflops, forward_gbs, backward_gflops, backward_gbs and, for each rate,
    its fraction of the peak (forward_flops_fraction, forward_bandwidth_fraction,
    backward_flops_fraction, backward_bandwidth_fraction); None where a count is unknown or a
    time is zero. The total row adds measured_step_s (the median step without instrumentation),
    peak_gflops and peak_gbs.
    """
    layers = _graph_layers(model)
    if not isinstance(training, bool):
        raise ValueError(f"profile: training must be True or False, got {training!r}")
    repeats = _check_int("repeats", repeats, 1)
    warmup = _check_int("warmup", warmup, 0)
    if model.device != "cpu":
        raise ValueError(f"profile: times CPU kernels against the CPU's peaks, but model '{model.name}' has its "
                         f"weights on '{model.device}'; move it with model.to('cpu')")
    given = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(given) != len(model.inputs):
        raise ValueError(f"profile: model '{model.name}' takes {len(model.inputs)} input(s), got {len(given)} arrays")
    arrays = [np.asarray(a.numpy() if isinstance(a, Tensor) else a) for a in given]
    for index, array in enumerate(arrays):
        if array.ndim == 0 or array.shape[0] == 0:
            raise ValueError(f"profile: x{'' if len(arrays) == 1 else f'[{index}]'} must be a batch (a first axis "
                             f"of at least one sample), got an array of shape {array.shape}")
    inputs = [Tensor(a) for a in arrays]
    inputs = inputs[0] if len(inputs) == 1 else inputs
    peaks = machine_peaks(cores, simd_lanes, fma_units, clock_ghz, memory_bandwidth_gbs)

    variables = model.trainable_weights if training else []
    saved_state = [(v, np.array(v.numpy(), copy=True)) for v in model.non_trainable_weights]
    names = [layer.name for layer in layers]
    recorder = _Recorder(names)
    clock = time.perf_counter

    def plain_step():
        start = clock()
        if variables:
            outputs = _flatten(model(inputs, training=True))
            grad(outputs, variables, [np.ones_like(o.data) for o in outputs])
        else:
            with no_grad():
                model(inputs, training=training)
        return clock() - start

    def instrumented_step():
        """Per-layer forward and backward times, and the step's wall time less the profiler's own
        bookkeeping (finding each call's Functions, wrapping their backwards), which no row is charged."""
        recorder.reset()
        recorder.mark = start = clock()
        if variables:
            outputs = _flatten(model(inputs, training=True))
            forward_end = clock()
            recorder.forward[OTHER] += forward_end - recorder.mark
            recorder.wrap_backwards()
            recorder.last = OTHER
            recorder.mark = backward_start = clock()
            try:
                grad(outputs, variables, [np.ones_like(o.data) for o in outputs])
                end = clock()
            finally:
                recorder.unwrap_backwards()
            recorder.backward[OTHER] += end - recorder.mark
            wall = (forward_end - start) + (end - backward_start) - recorder.excluded
        else:
            with no_grad():
                model(inputs, training=training)
            end = clock()
            recorder.forward[OTHER] += end - recorder.mark
            wall = end - start - recorder.excluded
        recorder.record_shapes = False
        return dict(recorder.forward), dict(recorder.backward), wall

    originals = {}
    for layer in layers:
        originals[id(layer)] = layer.__dict__.get("call")
        layer.call = recorder.wrap_call(layer)
    forwards, backwards, plain, walls = [], [], [], []
    try:
        instrumented_step()  # records the shapes of every call
        for step in range(warmup + repeats):
            timed_plain = plain_step()
            timed = instrumented_step()
            if step >= warmup:
                plain.append(timed_plain)
                forwards.append(timed[0])
                backwards.append(timed[1])
                walls.append(timed[2])
    finally:
        for layer in layers:
            original = originals[id(layer)]
            if original is None:
                layer.__dict__.pop("call", None)
            else:
                layer.call = original
        for variable, value in saved_state:
            variable.assign(value)

    rows = []
    for layer in layers:
        name = layer.name
        flops = bytes_ = 0
        backward_flops = backward_bytes = 0 if variables else None
        for input_shapes, output_shapes, tracked in recorder.calls[name]:
            f, b, bf, bb = layer_cost(layer, input_shapes, output_shapes, training=training, input_grad=tracked)
            flops = None if flops is None or f is None else flops + f
            bytes_ += b
            if variables:
                backward_flops = None if backward_flops is None or bf is None else backward_flops + bf
                backward_bytes += bb
        rows.append(_row(name, type(layer).__name__, _output_shape_text(model, layer), len(recorder.calls[name]),
                         flops, bytes_, backward_flops, backward_bytes,
                         statistics.median(f[name] for f in forwards),
                         statistics.median(b[name] for b in backwards) if variables else None, peaks))
    rows.append(_row(OTHER, "", "", 0, None, None, None, None, statistics.median(f[OTHER] for f in forwards),
                     statistics.median(b[OTHER] for b in backwards) if variables else None, peaks))
    known = rows[:-1]  # the layers
    total = _row(TOTAL, "", "", sum(r["calls"] for r in known),
                 _sum(r["flops"] for r in known), _sum(r["bytes"] for r in known),
                 _sum(r["backward_flops"] for r in known) if variables else None,
                 _sum(r["backward_bytes"] for r in known) if variables else None,
                 sum(r["forward_s"] for r in rows),
                 sum(r["backward_s"] for r in rows) if variables else None, peaks)
    total.update(measured_step_s=statistics.median(plain), instrumented_step_s=statistics.median(walls),
                 peak_gflops=peaks.flops / 1e9, peak_gbs=peaks.memory_bandwidth / 1e9)
    rows.append(total)
    for row in rows:
        row["share"] = row["time_s"] / total["time_s"] if total["time_s"] else None
    if file is not None:
        _print_table(model, arrays, rows, peaks, training, bool(variables), repeats, file)
    return rows


def _sum(values):
    """The sum of the known values (None counts as unknown and is left out)."""
    return sum(v for v in values if v is not None)


def _row(name, class_name, output_shape, calls, flops, bytes_, backward_flops, backward_bytes, forward_s,
         backward_s, peaks):
    forward_gflops = _rate(flops, forward_s)
    forward_gbs = _rate(bytes_, forward_s)
    backward_gflops = _rate(backward_flops, backward_s)
    backward_gbs = _rate(backward_bytes, backward_s)
    return {
        "name": name, "class": class_name, "output_shape": output_shape, "calls": calls,
        "flops": flops, "bytes": bytes_, "backward_flops": backward_flops, "backward_bytes": backward_bytes,
        "intensity": flops / bytes_ if flops is not None and bytes_ else None,
        "forward_s": forward_s, "backward_s": backward_s, "time_s": forward_s + (backward_s or 0.0),
        "forward_gflops": None if forward_gflops is None else forward_gflops / 1e9,
        "forward_gbs": None if forward_gbs is None else forward_gbs / 1e9,
        "backward_gflops": None if backward_gflops is None else backward_gflops / 1e9,
        "backward_gbs": None if backward_gbs is None else backward_gbs / 1e9,
        "forward_flops_fraction": _fraction(forward_gflops, peaks.flops),
        "forward_bandwidth_fraction": _fraction(forward_gbs, peaks.memory_bandwidth),
        "backward_flops_fraction": _fraction(backward_gflops, peaks.flops),
        "backward_bandwidth_fraction": _fraction(backward_gbs, peaks.memory_bandwidth),
    }


# --------------------------------------------------------------------------- the table


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def _rate_cell(rate, fraction):
    if rate is None:
        return "-"
    percent = 100 * fraction
    return f"{rate:.1f} ({percent:.1f}%)" if percent < 9.95 else f"{rate:.1f} ({percent:.0f}%)"


def _print_table(model, arrays, rows, peaks, training, backward, repeats, file):
    shapes = ", ".join(str(a.shape) for a in arrays)
    what = ("training step: forward (training=True) + backward to the trainable weights" if backward
            else "inference: forward" if not training else "training forward (no trainable weights)")
    header = ["Layer (type)", "Output shape", "MFLOP", "MB", "FLOP/B", "fwd ms"]
    if backward:
        header += ["bwd ms"]
    header += ["share", "fwd GFLOP/s", "fwd GB/s"]
    if backward:
        header += ["bwd GFLOP/s", "bwd GB/s"]
    table = []
    for row in rows:
        label = row["name"] if not row["class"] else f"{row['name']} ({row['class']})"
        cells = [label, row["output_shape"], _fmt(row["flops"] and row["flops"] / 1e6, ".1f"),
                 _fmt(row["bytes"] and row["bytes"] / 1e6, ".2f"), _fmt(row["intensity"], ".1f"),
                 f"{1e3 * row['forward_s']:.2f}"]
        if backward:
            cells.append(f"{1e3 * row['backward_s']:.2f}")
        cells += [_fmt(row["share"] and 100 * row["share"], ".1f") + "%",
                  _rate_cell(row["forward_gflops"], row["forward_flops_fraction"]),
                  _rate_cell(row["forward_gbs"], row["forward_bandwidth_fraction"])]
        if backward:
            cells += [_rate_cell(row["backward_gflops"], row["backward_flops_fraction"]),
                      _rate_cell(row["backward_gbs"], row["backward_bandwidth_fraction"])]
        table.append(cells)
    widths = [max(len(header[i]), *(len(r[i]) for r in table)) for i in range(len(header))]

    def line(cells):
        first = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        rest = [cell.rjust(width) for cell, width in zip(cells[2:], widths[2:])]
        return "  ".join(first + rest).rstrip()

    rule = "-" * len(line(header))
    total = rows[-1]
    out = [f'Profile of model "{model.name}", input {shapes}, {what}; median of {repeats} step(s)']
    out += peaks.describe()
    out += [rule, line(header), rule] + [line(cells) for cells in table[:-1]] + [rule, line(table[-1]), rule]
    difference = (total["time_s"] - total["measured_step_s"]) / total["measured_step_s"]
    out.append(f"whole step without the profiler: {1e3 * total['measured_step_s']:.2f} ms (median); the rows add "
               f"up to {1e3 * total['time_s']:.2f} ms ({100 * difference:+.1f}%)")
    out.append("MFLOP, MB and FLOP/B are the forward's (backward counts are in the returned rows); "
               "rates in parentheses are fractions of the peaks above")
    for text in out:
        print(text, file=file)
