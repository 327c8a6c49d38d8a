"""compile / fit / evaluate / predict: Keras' training loop over convlab's autograd.

One training step is the whole story of supervised learning in five lines:

    outputs = model(x, training=True)                        # forward, recorded
    loss = sum(weight_i * loss_i(y_i, outputs_i))            # one scalar
    gradients = autograd.grad(loss, model.trainable_weights) # backward
    optimizer.apply_gradients(zip(gradients, weights))       # update
    metrics.update_state(y, outputs)                         # bookkeeping

Everything else here is bookkeeping around that step: batching arrays (shuffled each
epoch from convlab's seeded generator, so a seed repeats a run exactly) or reading
batches from a dataset, validation, callbacks, the progress bar, and checking the data
against the model before the first step so that a wrong shape or label fails at once
with a message, not after an epoch.

`TrainingMixin` gives these methods to Model; a dataset is anything iterable (again for
each epoch) that yields `(x, y)` batches of arrays, with `len()` the number of batches
when it knows it (convlab.data.image_dataset_from_directory returns one).
"""

import contextlib
import functools
import math
import os
import sys
import time
import warnings

import numpy as np

from . import callbacks as callbacks_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import utils
from .autograd import Tensor, _to_device, array_module, grad, no_grad

__all__ = ["TrainingMixin", "ProgressBar"]


# --------------------------------------------------------------------------- progress bar


class ProgressBar:
    """Keras-style progress: `12/63 [=====>.....] - ETA: 4s - loss: 0.2134 - accuracy: 0.9375`.

    verbose=1 redraws one line in place on a terminal (and prints only the finished line
    elsewhere, so logs stay readable); verbose=2 prints one line per epoch; 0 prints nothing.
    The finished line adds the time, time per step and throughput (samples per second).
    """

    width = 30

    def __init__(self, target, verbose=1, stream=None):
        self.target, self.verbose = target, verbose
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self.seen = 0
        self.interactive = verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw = 0.0

    @staticmethod
    def format_logs(logs):
        """' - loss: 0.2134 - accuracy: 0.9375'; a NaN or infinite value shows as nan / inf."""
        return "".join(f" - {name}: {value:.4f}" for name, value in logs.items())

    def update(self, step, logs, samples):
        """After batch `step` (1-based) with `samples` images in it."""
        self.seen += samples
        if not self.interactive:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.1 and step != self.target:
            return
        self._last_draw = now
        elapsed = now - self.start
        if self.target:
            done = int(self.width * step / self.target)
            bar = "=" * max(done - 1, 0) + (">" if done < self.width else "=") + "." * (self.width - done)
            eta = elapsed / step * (self.target - step)
            head = f"{step:>{len(str(self.target))}}/{self.target} [{bar}] - ETA: {eta:.0f}s"
        else:
            head = f"{step} steps - {elapsed:.0f}s"
        self.stream.write("\r" + head + self.format_logs(logs) + "\033[K")
        self.stream.flush()

    def finish(self, steps, logs):
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self.start
        per_step = 1000 * elapsed / max(steps, 1)
        rate = self.seen / elapsed if elapsed > 0 else float("inf")
        line = (f"{steps}/{steps} [{'=' * self.width}] - {elapsed:.1f}s {per_step:.0f}ms/step "
                f"{rate:.0f} samples/s" + self.format_logs(logs))
        self.stream.write(("\r" if self.interactive else "") + line + ("\033[K" if self.interactive else "") + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------- data


def _as_list(structure):
    if structure is None:
        return None
    return list(structure) if isinstance(structure, (list, tuple)) else [structure]


def _is_array_like(value):
    return hasattr(value, "shape") and hasattr(value, "dtype") or isinstance(value, (list, tuple)) and value and all(
        hasattr(v, "shape") for v in value)


def _host(value):
    if isinstance(value, Tensor):
        return value.numpy()
    return _to_device(value, "cpu") if hasattr(value, "__cuda_array_interface__") else np.asarray(value)


def _int_argument(where, name, value, minimum):
    """value as an int >= minimum. Integral floats (64.0) are taken; a string, a bool, NaN,
    infinity or 2.5 is refused with an error that names the argument."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value):
        number = int(value)
    else:
        number = None
    if number is None or number < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{where}: {name} must be {wanted}, got {value!r}")
    return number


def _verbose_argument(where, verbose):
    """'auto' (1), 0 (silent), 1 (a progress bar) or 2 (one line per epoch); False and True are 0 and 1."""
    if verbose == "auto" and isinstance(verbose, str):
        return 1
    if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"{where}: verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _non_finite(arrays):
    """Whether any floating array in the list holds NaN or infinity (numpy or CuPy)."""
    for array in arrays or []:
        array = array.data if isinstance(array, Tensor) else array
        dtype = getattr(array, "dtype", None)
        if dtype is not None and dtype.kind in "fc" and not bool(array_module(array).isfinite(array).all()):
            return True
    return False


class _ArrayBatches:
    """Batches of (lists of) arrays: one pass per iteration, in a fresh order per epoch when shuffled."""

    def __init__(self, xs, ys, batch_size, shuffle, rng):
        self.xs, self.ys = xs, ys
        self.count = len(xs[0])
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng

    def __len__(self):
        return math.ceil(self.count / self.batch_size)

    @property
    def steps(self):
        return len(self)

    def __iter__(self):
        order = self.rng.permutation(self.count) if self.shuffle else None
        for start in range(0, self.count, self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            xs = [x[index] for x in self.xs]
            ys = None if self.ys is None else [y[index] for y in self.ys]
            yield xs, ys


class _DatasetBatches:
    """A user's dataset: each element is (x, y), (x, y, sample_weight) or x alone."""

    def __init__(self, dataset):
        self.dataset = dataset

    @property
    def steps(self):
        """The number of batches, or None for a dataset that does not know it."""
        try:
            return len(self.dataset)
        except TypeError:
            return None

    def __iter__(self):
        for element in self.dataset:
            if isinstance(element, tuple) and len(element) in (2, 3):
                x, y = element[0], element[1]
            elif isinstance(element, tuple) and len(element) == 1:
                x, y = element[0], None
            else:
                x, y = element, None
            yield _as_list(x), _as_list(y)


class _StepBatches:
    """`steps` batches a pass (Keras' steps_per_epoch, validation_steps, steps), read from one
    iterator kept from pass to pass: an endless source (an ImageDataGenerator iterator, a
    Python generator) goes on where the last pass stopped. A finite source that runs out ends
    the pass early, with a warning, and the next pass starts it afresh; one with nothing
    left at all (a spent generator) sets `ran_out`, and fit stops, as Keras does."""

    def __init__(self, source, steps, where, argument):
        self.source, self._steps, self.where, self.argument = source, steps, where, argument
        self._iterator = None
        self._pending = None  # a batch read ahead (to check the data before training)
        self.ran_out = False
        self._warned = False

    @property
    def steps(self):
        return self._steps

    def peek(self):
        """The next batch, which the next pass still yields first (None when there is none)."""
        if self._pending is None:
            self._pending = self._next()
        return self._pending

    def _next(self):
        if self._iterator is None:
            self._iterator = iter(self.source)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = None
            return None

    def __iter__(self):
        for step in range(self._steps):
            if self._pending is not None:
                batch, self._pending = self._pending, None
            else:
                batch = self._next()
            if batch is None and step == 0:
                batch = self._next()  # a finite source that ended with the last pass: start it again
            if batch is None:
                self.ran_out = step == 0
                if step and not self._warned:
                    self._warned = True
                    warnings.warn(f"{self.where}: the data ran out after {step} of {self.argument}={self._steps} "
                                  f"batches; passes end early (give {self.argument}=None to read it whole)",
                                  RuntimeWarning, stacklevel=3)
                return
            yield batch


# --------------------------------------------------------------------------- the mixin


_blas_controller = None


def _one_blas_thread():
    """A context in which numpy's BLAS (OpenBLAS, MKL) runs on one thread.

    convlab's kernels run on an OpenMP team with a thread per core. numpy's BLAS keeps its
    own pool of threads, which spin for a while after each matrix product (a Dense layer's),
    and the two pools then fight for the cores: on 2 cores the MNIST convnet's training step
    took 27 ms with both pools at 2 threads and 11 ms with BLAS at 1. So training, evaluation
    and prediction hold BLAS to one thread while they run (threadpoolctl, when installed;
    about 13 microseconds a call). CONVLAB_LIMIT_BLAS_THREADS=0 turns this off.
    """
    global _blas_controller
    if os.environ.get("CONVLAB_LIMIT_BLAS_THREADS", "1") == "0":
        return contextlib.nullcontext()
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas_controller = ThreadpoolController()
        except Exception:  # not installed, or no BLAS it knows
            _blas_controller = False
    if not _blas_controller:
        return contextlib.nullcontext()
    return _blas_controller.limit(limits=1, user_api="blas")


def _with_one_blas_thread(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _one_blas_thread():
            return method(*args, **kwargs)

    return wrapper


class TrainingMixin:
    """compile, fit, evaluate, predict, train_on_batch, test_on_batch, predict_on_batch."""

    optimizer = None
    _losses = None  # one Loss per output, set by compile
    stop_training = False

    # ---- compile

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None):
        """Choose the optimizer, the loss (one for every output, or a list/dict by output
        name), the metrics and, for several outputs, the weights of their losses.

        Names follow Keras: "rmsprop", "adam", "sgd"; "sparse_categorical_crossentropy",
        "categorical_crossentropy", "binary_crossentropy", "mse"; "accuracy".
        """
        self._require_graph("compile")
        names = self._output_names()
        optimizer_object = optimizers_module.get(optimizer)
        if loss is None:
            raise ValueError(f"Model '{self.name}'.compile: give a loss (a name such as "
                             "'sparse_categorical_crossentropy', a Loss, or a list/dict with one per output)")
        self._losses = [losses_module.get(entry) for entry in self._per_output("loss", loss, names)]
        if loss_weights is None:
            weights = [1.0] * len(names)
        else:
            weights = [float(w) for w in self._per_output("loss_weights", loss_weights, names, broadcast=False)]
        self._loss_weights = weights
        self._metric_specs = self._metric_lists(metrics, names)
        self._metrics = [
            [metrics_module.get(m, loss=self._losses[i], output_shape=self.outputs[i].shape) for m in specs]
            for i, specs in enumerate(self._metric_specs)
        ]
        self._loss_tracker = metrics_module.Mean(name="loss")
        self._output_loss_trackers = [metrics_module.Mean(name=f"{n}_loss") for n in names]
        self.optimizer = optimizer_object
        self._loss_weights_given = loss_weights  # as given (a dict stays a dict), for saving
        self.stop_training = False

    def _output_names(self):
        return [t.node.layer.name for t in self.outputs]

    def _per_output(self, what, value, names, broadcast=True):
        where = f"Model '{self.name}'.compile"
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            missing = [n for n in names if n not in value]
            if unknown or missing:
                raise ValueError(f"{where}: {what} keys must be the output names {names}; "
                                 f"unknown {unknown}, missing {missing}")
            return [value[n] for n in names]
        if isinstance(value, (list, tuple)):
            if len(value) != len(names):
                raise ValueError(f"{where}: {what} has {len(value)} entries for {len(names)} outputs {names}")
            return list(value)
        if not broadcast and len(names) > 1:
            raise ValueError(f"{where}: {what} must be a list or dict with one entry per output {names}")
        return [value] * len(names)

    def _targets_by_output(self, y, where):
        """y as given, or a dict {output name: targets} (Keras' form) as a list in output order."""
        if not isinstance(y, dict):
            return y
        names = self._output_names()
        unknown, missing = sorted(set(y) - set(names)), [n for n in names if n not in y]
        if unknown or missing:
            raise ValueError(f"{where}: the keys of y must be the output names {names}; unknown {unknown}, "
                             f"missing {missing}")
        return [y[n] for n in names]

    def _metric_lists(self, metrics, names):
        if metrics is None:
            return [[] for _ in names]
        if isinstance(metrics, dict):
            unknown = sorted(set(metrics) - set(names))
            if unknown:
                raise ValueError(f"Model '{self.name}'.compile: metrics keys {unknown} are not output names {names}")
            return [_as_list(metrics.get(n)) or [] for n in names]
        metrics = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
        if metrics and all(isinstance(m, (list, tuple)) for m in metrics):
            if len(metrics) != len(names):
                raise ValueError(f"Model '{self.name}'.compile: {len(metrics)} metric lists for {len(names)} outputs")
            return [list(m) for m in metrics]
        return [list(metrics) for _ in names]

    def _require_compiled(self, what):
        if self.optimizer is None or self._losses is None:
            raise RuntimeError(f"Model '{self.name}': call compile(optimizer, loss, ...) before {what}()")

    # ---- shared machinery

    @property
    def device(self):
        weights = self.weights
        return weights[0].device if weights else "cpu"

    @property
    def metrics_names(self):
        names = ["loss"]
        if len(self.outputs) > 1:
            names += [t.name for t in self._output_loss_trackers]
        return names + [name for name, _ in self._named_metrics()]

    def _named_metrics(self):
        multi = len(self.outputs) > 1
        result = []
        for output_name, metrics in zip(self._output_names(), self._metrics):
            for metric in metrics:
                result.append((f"{output_name}_{metric.name}" if multi else metric.name, metric))
        return result

    def _reset_metrics(self):
        self._loss_tracker.reset_state()
        for tracker in self._output_loss_trackers:
            tracker.reset_state()
        for _, metric in self._named_metrics():
            metric.reset_state()

    def _logs(self, prefix=""):
        logs = {prefix + "loss": self._loss_tracker.result()}
        if len(self.outputs) > 1:
            logs.update({prefix + t.name: t.result() for t in self._output_loss_trackers})
        logs.update({prefix + name: metric.result() for name, metric in self._named_metrics()})
        return logs

    def _to_model(self, arrays):
        """Host or device arrays -> Tensors on the model's device (one, or a list for several inputs)."""
        device = self.device
        tensors = [Tensor(_to_device(a.data if isinstance(a, Tensor) else a, device)) for a in arrays]
        return tensors[0] if len(tensors) == 1 else tensors

    def _compute_loss(self, ys, outputs):
        total = None
        per_output = []
        for loss, weight, y, out in zip(self._losses, self._loss_weights, ys, outputs):
            value = loss(y, out)
            per_output.append(value)
            term = value if weight == 1.0 else value * weight
            total = term if total is None else total + term
        return total, per_output

    def _record(self, ys, outputs, total, per_output, batch_size):
        self._loss_tracker.update_state(float(total.item()), sample_weight=batch_size)
        for tracker, value in zip(self._output_loss_trackers, per_output):
            tracker.update_state(float(value.item()), sample_weight=batch_size)
        host_outputs = [o.numpy() for o in outputs] if any(self._metrics) else None
        for metrics, y, out in zip(self._metrics, ys, host_outputs or []):
            for metric in metrics:
                metric.update_state(_host(y), out)

    def _train_step(self, xs, ys):
        variables = self.trainable_weights
        outputs = _as_list(self(self._to_model(xs), training=True))
        total, per_output = self._compute_loss(ys, outputs)
        gradients = grad(total, variables) if variables else []
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._record(ys, outputs, total, per_output, len(xs[0]))  # reads values only, records nothing

    def _test_step(self, xs, ys):
        with no_grad():
            outputs = _as_list(self(self._to_model(xs), training=False))
            total, per_output = self._compute_loss(ys, outputs)
            self._record(ys, outputs, total, per_output, len(xs[0]))

    # ---- checking data before training

    def _check_arrays(self, what, xs, ys, allow_empty=False):
        where = f"Model '{self.name}'.{what}"
        if len(xs) != len(self.inputs):
            raise ValueError(f"{where}: the model has {len(self.inputs)} inputs, got {len(xs)} input arrays")
        counts = {len(x) for x in xs}
        if len(counts) > 1:
            raise ValueError(f"{where}: the input arrays have different lengths {[len(x) for x in xs]}")
        if not allow_empty and counts == {0}:
            shapes = ", ".join(str(tuple(np.shape(x))) for x in xs)
            raise ValueError(f"{where}: x is empty: 0 samples (shape {shapes}); {what.split()[0]} needs at least one")
        for index, (x, tensor) in enumerate(zip(xs, self.inputs)):
            self._check_input_array(where, index, np.shape(x), tensor)
        if ys is None:
            return
        if len(ys) != len(self.outputs):
            raise ValueError(f"{where}: the model has {len(self.outputs)} outputs, got {len(ys)} target arrays (y)")
        for index, y in enumerate(ys):
            if len(y) != len(xs[0]):
                label = "y" if len(ys) == 1 else f"y[{index}]"
                raise ValueError(f"{where}: x has {len(xs[0])} samples but {label} has {len(y)}; they must match")
        self._check_targets(where, ys)

    def _check_input_array(self, where, index, shape, tensor):
        expected = tensor.shape
        label = "x" if len(self.inputs) == 1 else f"x[{index}]"
        if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected[1:], shape[1:])):
            size = "x".join(str(n) for n in expected[1:])
            raise ValueError(
                f"{where}: {label} has shape {tuple(shape)}, but the model's input '{tensor.name}' expects "
                f"{expected} (batch, {size}); resize or reshape the data to match"
            )

    def _check_targets(self, where, ys):
        for loss, y, tensor in zip(self._losses, ys, self.outputs):
            try:
                loss.check_targets(_host(y), tensor.shape)
            except ValueError as error:
                raise ValueError(f"{where}: targets for output '{tensor.node.layer.name}': {error}") from None

    def _batches(self, what, x, y, batch_size, shuffle, rng, need_y=True, steps=None, steps_name="steps"):
        """A batch source for arrays (checked now) or a dataset (its first batch is checked now).

        steps: None for whole passes, or the number of batches of a pass (see _StepBatches),
        which an iterator that is its own iterator (iter(x) is x) needs unless it has a len()
        (Keras' iterators: the batches of an epoch)."""
        where = f"Model '{self.name}'.{what}"
        if x is None:
            raise ValueError(f"{where}: x is required")
        y = self._targets_by_output(y, where)
        if _is_array_like(x):
            xs = [_as_array(v) for v in _as_list(x)]
            ys = None if y is None else [_as_array(v) for v in _as_list(y)]
            if need_y and ys is None:
                raise ValueError(f"{where}: y is required with array inputs")
            batch_size = 32 if batch_size is None else _int_argument(where, "batch_size", batch_size, 1)
            self._check_arrays(what, xs, ys, allow_empty=not need_y)
            batches = _ArrayBatches(xs, ys, batch_size, shuffle, rng)
            if steps is not None:
                return _StepBatches(batches, steps, where, steps_name), None
            return batches, len(xs[0])
        if y is not None:
            raise ValueError(f"{where}: y must not be given when x is a dataset (it yields (x, y) batches)")
        if not hasattr(x, "__iter__"):
            raise TypeError(f"{where}: x must be an array, a list of arrays or an iterable dataset, "
                            f"got {type(x).__name__}")
        if steps is None and iter(x) is x:
            if not hasattr(x, "__len__"):
                raise TypeError(
                    f"{where}: x is a one-shot iterator (a generator, say), which can be read only once; pass a "
                    f"dataset whose __iter__ starts a fresh pass each time (fit reads it once per epoch), or give "
                    f"{steps_name}= to read that many batches from it a pass, as Keras does"
                )
            steps = len(x)  # Keras' endless iterators know the batches of their epoch
        batches = _DatasetBatches(x)
        if steps is not None:
            batches = _StepBatches(batches, steps, where, steps_name)
            first = batches.peek()
        else:
            first = next(iter(batches), None)
        if first is None:
            raise ValueError(f"{where}: the dataset yields no batches")
        xs, ys = first
        if need_y and ys is None:
            raise ValueError(f"{where}: the dataset must yield (x, y) batches")
        self._check_arrays(what + " (the dataset's first batch)", [_host(v) for v in xs],
                           None if ys is None else [_host(v) for v in ys])
        return batches, None

    # ---- fit / evaluate / predict

    @_with_one_blas_thread
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, validation_batch_size=None, validation_freq=1,
            steps_per_epoch=None, validation_steps=None):
        """Train for `epochs` epochs; returns a History (history.history["loss"], ["val_loss"], ...).

        steps_per_epoch, validation_steps: as Keras, the number of batches of an epoch and of
        each validation, read on from one iterator kept across epochs; what an endless source
        (a Python generator, ImageDataGenerator's iterators) needs. Iterators with a len()
        (ImageDataGenerator's) default to it.

        Empty data is refused. Data holding NaN or infinity trains to NaN weights, as in
        Keras: fit warns once, at the first batch that holds such values, the progress bar
        shows the loss as nan, and callbacks=[convlab.callbacks.TerminateOnNaN()] stops at
        the first NaN loss.
        """
        self._require_compiled("fit")
        where = f"Model '{self.name}'.fit"
        epochs = _int_argument(where, "epochs", epochs, 0)
        initial_epoch = _int_argument(where, "initial_epoch", initial_epoch, 0)
        validation_freq = _int_argument(where, "validation_freq", validation_freq, 1)
        if validation_batch_size is not None:
            validation_batch_size = _int_argument(where, "validation_batch_size", validation_batch_size, 1)
        if steps_per_epoch is not None:
            steps_per_epoch = _int_argument(where, "steps_per_epoch", steps_per_epoch, 1)
        if validation_steps is not None:
            validation_steps = _int_argument(where, "validation_steps", validation_steps, 1)
        verbose = _verbose_argument(where, verbose)
        rng = np.random.default_rng(utils.derived_seed())
        if validation_split is not None and (isinstance(validation_split, bool)
                                             or not isinstance(validation_split, (int, float, np.number))):
            raise ValueError(f"{where}: validation_split must be a number in [0, 1), got {validation_split!r}")
        if validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"{where}: validation_split must be in (0, 1), got {validation_split!r}")
            if validation_data is not None:
                raise ValueError(f"{where}: give validation_split or validation_data, not both")
            if not _is_array_like(x):
                raise ValueError(f"{where}: validation_split needs array inputs; split a dataset yourself "
                                 "(image_dataset_from_directory(..., validation_split=, subset=))")
            y = self._targets_by_output(y, where)
            xs, ys = [_as_array(v) for v in _as_list(x)], [_as_array(v) for v in _as_list(y)] if y is not None else None
            count = len(xs[0])
            if count == 0:
                self._check_arrays("fit", xs, ys)  # refuses the empty x, naming it
            split_at = int(count * (1 - validation_split))  # Keras keeps the last fraction for validation
            if split_at in (0, count):
                raise ValueError(f"{where}: validation_split={validation_split} leaves an empty training or "
                                 f"validation set for {count} samples")
            validation_data = ([v[split_at:] for v in xs], None if ys is None else [v[split_at:] for v in ys])
            x, y = [v[:split_at] for v in xs], None if ys is None else [v[:split_at] for v in ys]
        train_batches, _ = self._batches("fit", x, y, batch_size, shuffle, rng, steps=steps_per_epoch,
                                         steps_name="steps_per_epoch")
        validation = None
        if validation_data is not None:
            is_pair = isinstance(validation_data, tuple) and len(validation_data) in (2, 3)
            validation_x, validation_y = validation_data[:2] if is_pair else (validation_data, None)
            validation = self._batches("fit (validation_data)", validation_x, validation_y,
                                       validation_batch_size or batch_size, False, rng, steps=validation_steps,
                                       steps_name="validation_steps")[0]

        history = callbacks_module.History()
        steps = train_batches.steps
        params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        callback_list = callbacks_module.CallbackList(list(callbacks or []) + [history], self, params)
        self.stop_training = False
        self.history = history
        warned_non_finite = False
        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            callback_list.on_epoch_begin(epoch)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            progress = ProgressBar(steps, verbose)
            step = 0
            for step, (xs, ys) in enumerate(train_batches, start=1):
                if not warned_non_finite:
                    warned_non_finite = self._warn_if_non_finite(where, epoch, step, xs, ys)
                callback_list.on_train_batch_begin(step - 1)
                self._train_step(xs, ys)
                logs = self._logs()
                callback_list.on_train_batch_end(step - 1, logs)
                progress.update(step, logs, len(xs[0]))
                if self.stop_training:  # a callback (TerminateOnNaN, say) ends the epoch here, as in Keras
                    break
            if step == 0 and getattr(train_batches, "ran_out", False):
                warnings.warn(f"{where}: the data ran out before epoch {epoch + 1}; training stops there, as in "
                              f"Keras. Expected a source that yields steps_per_epoch * epochs = "
                              f"{train_batches.steps} * {epochs} batches", RuntimeWarning, stacklevel=2)
                break
            logs = self._logs()
            if validation is not None and (epoch + 1) % validation_freq == 0:
                logs.update(self._run_evaluation(validation, callback_list, prefix="val_"))
            callback_list.on_epoch_end(epoch, logs)
            progress.finish(step, logs)
            if self.stop_training:
                break
        callback_list.on_train_end()
        return history

    @staticmethod
    def _warn_if_non_finite(where, epoch, step, xs, ys):
        """Warn (once per fit: the caller stops asking) when a batch holds NaN or infinity."""
        names = [name for name, arrays in (("x", xs), ("y", ys)) if _non_finite(arrays)]
        if not names:
            return False
        warnings.warn(
            f"{where}: batch {step} of epoch {epoch + 1} holds NaN or infinity in {' and '.join(names)}; the loss "
            "and then the weights become NaN. Clean the data, or pass callbacks=[convlab.callbacks.TerminateOnNaN()] "
            "to stop at the first NaN loss", RuntimeWarning, stacklevel=3)
        return True

    def _run_evaluation(self, batches, callback_list, prefix="", progress=None):
        self._reset_metrics()
        callback_list.on_test_begin()
        step = 0
        for step, (xs, ys) in enumerate(batches, start=1):
            callback_list.on_test_batch_begin(step - 1)
            self._test_step(xs, ys)
            logs = self._logs()
            callback_list.on_test_batch_end(step - 1, logs)
            if progress is not None:
                progress.update(step, logs, len(xs[0]))
        logs = self._logs(prefix)
        callback_list.on_test_end(logs)
        if progress is not None:
            progress.finish(step, logs)
        return logs

    @_with_one_blas_thread
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", callbacks=None, return_dict=False,
                 steps=None):
        """The loss and metrics over the data: a float (loss only), a list in the order of
        metrics_names, or a dict with return_dict=True. steps: read only that many batches
        (what an endless generator needs; see fit's steps_per_epoch)."""
        self._require_compiled("evaluate")
        verbose = _verbose_argument(f"Model '{self.name}'.evaluate", verbose)
        if steps is not None:
            steps = _int_argument(f"Model '{self.name}'.evaluate", "steps", steps, 1)
        batches, _ = self._batches("evaluate", x, y, batch_size, False, None, steps=steps)
        callback_list = callbacks_module.CallbackList(callbacks, self, {"verbose": verbose})
        logs = self._run_evaluation(batches, callback_list, progress=ProgressBar(batches.steps, verbose))
        return _result(logs, return_dict)

    @_with_one_blas_thread
    def predict(self, x, batch_size=None, verbose=0, callbacks=None, steps=None):
        """The model's outputs for x, computed batch by batch without recording gradients;
        only one batch of activations exists at a time, the results are gathered on the host.
        steps: read only that many batches (what an endless generator needs)."""
        if steps is not None:
            steps = _int_argument(f"Model '{self.name}'.predict", "steps", steps, 1)
        batches, count = self._batches("predict", x, None, batch_size, False, None, need_y=False, steps=steps)
        callback_list = callbacks_module.CallbackList(callbacks, self, {"verbose": verbose})
        callback_list.on_predict_begin()
        results = None
        filled = 0
        pieces = None
        for step, (xs, _) in enumerate(batches):
            callback_list.on_predict_batch_begin(step)
            with no_grad():
                outputs = [o.numpy() for o in _as_list(self(self._to_model(xs), training=False))]
            if count is not None:  # arrays: write into preallocated results
                if results is None:
                    results = [np.empty((count,) + o.shape[1:], dtype=o.dtype) for o in outputs]
                for result, o in zip(results, outputs):
                    result[filled:filled + len(o)] = o
                filled += len(outputs[0])
            else:
                pieces = [[] for _ in outputs] if pieces is None else pieces
                for piece, o in zip(pieces, outputs):
                    piece.append(o)
            callback_list.on_predict_batch_end(step, {"outputs": outputs})
        callback_list.on_predict_end()
        if count is None:
            results = [np.concatenate(p) for p in pieces] if pieces else []
        if results is None:
            results = [np.empty((0,) + tuple(t.shape[1:]), dtype=t.dtype) for t in self.outputs]
        return results if isinstance(self._output_structure, (list, tuple)) else results[0]

    @_with_one_blas_thread
    def train_on_batch(self, x, y, return_dict=False):
        """One update on one batch; returns the loss (and metrics) of that batch."""
        return self._on_batch("train_on_batch", self._train_step, x, y, return_dict)

    @_with_one_blas_thread
    def test_on_batch(self, x, y, return_dict=False):
        """The loss (and metrics) of one batch, without updating anything."""
        return self._on_batch("test_on_batch", self._test_step, x, y, return_dict)

    def _on_batch(self, what, step, x, y, return_dict):
        self._require_compiled(what)
        y = self._targets_by_output(y, f"Model '{self.name}'.{what}")
        xs, ys = [_as_array(v) for v in _as_list(x)], [_as_array(v) for v in _as_list(y)]
        self._check_arrays(what, xs, ys)
        self._reset_metrics()
        step(xs, ys)
        return _result(self._logs(), return_dict)

    @_with_one_blas_thread
    def predict_on_batch(self, x):
        return self.predict(x, batch_size=len(_as_list(x)[0]))

    # ---- Keras 1/2's generator methods (DLwP 1st edition), thin aliases

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1, callbacks=None,
                      validation_data=None, validation_steps=None, validation_freq=1, class_weight=None,
                      max_queue_size=10, workers=1, use_multiprocessing=False, shuffle=True, initial_epoch=0):
        """Keras 2's fit_generator: fit(generator, steps_per_epoch=..., ...), with a warning once.
        max_queue_size, workers and use_multiprocessing only set how Keras read ahead; they are
        ignored. class_weight is not supported."""
        _warn_generator_method("fit_generator", "fit")
        _no_class_weight(f"Model '{self.name}'.fit_generator", class_weight)
        return self.fit(generator, epochs=epochs, verbose=verbose, callbacks=callbacks,
                        validation_data=validation_data, shuffle=shuffle, initial_epoch=initial_epoch,
                        validation_freq=validation_freq, steps_per_epoch=steps_per_epoch,
                        validation_steps=validation_steps)

    def evaluate_generator(self, generator, steps=None, callbacks=None, max_queue_size=10, workers=1,
                           use_multiprocessing=False, verbose=0):
        """Keras 2's evaluate_generator: evaluate(generator, steps=...), with a warning once."""
        _warn_generator_method("evaluate_generator", "evaluate")
        return self.evaluate(generator, steps=steps, callbacks=callbacks, verbose=verbose)

    def predict_generator(self, generator, steps=None, callbacks=None, max_queue_size=10, workers=1,
                          use_multiprocessing=False, verbose=0):
        """Keras 2's predict_generator: predict(generator, steps=...), with a warning once."""
        _warn_generator_method("predict_generator", "predict")
        return self.predict(generator, steps=steps, callbacks=callbacks, verbose=verbose)


_warned_generator_methods = set()


def _warn_generator_method(old, new):
    """One warning per process and method: the book's code runs, and says what to write today."""
    if old not in _warned_generator_methods:
        _warned_generator_methods.add(old)
        warnings.warn(f"Model.{old} is deprecated: Model.{new} takes generators and iterators, with the same "
                      f"arguments; write model.{new}(...) instead", UserWarning, stacklevel=3)


def _no_class_weight(where, class_weight):
    if class_weight is not None:
        raise ValueError(f"{where}: class_weight is not supported by convlab's fit, got {class_weight!r}; "
                         f"expected None")


def _result(logs, return_dict):
    """Keras' return value: the logs dict, or the loss alone, or [loss, metrics...]."""
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _as_array(value):
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "__cuda_array_interface__") or isinstance(value, np.ndarray):
        return value
    return np.asarray(value)
