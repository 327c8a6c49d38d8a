"""The GPU-free half of benches/gpu_bench.py: what is measured, how much work each
measurement is, the time budget, and the markdown and JSON writers.

Nothing here imports CuPy, torch or convlab, so tests/test_gpu_check.py checks all of it
on any machine: the work counts against brute-force loops, the writers' output, the budget.

Conventions (stated again in every results file):
- Shapes are NHWC (batch, height, width, channels), kernels in Keras layouts, float32.
- "same" padding is TensorFlow's: output ceil(size / stride), the smaller half of the total
  padding before.
- FLOPs count 2 per multiply-add, and only the multiply-adds whose input tap lies inside the
  input (padding taps multiply zeros and are not counted). A conv's input gradient and
  kernel gradient do exactly the forward's multiply-adds.
- Bytes are the compulsory traffic: every tensor a kernel must read or write, once.
  Per-channel vectors (batch norm's gamma, mean, ...) are left out (<0.01%).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

BATCH = 32
MODEL_BATCH = 16
MODEL_SIZE = 180
VARIANTS = ("fast", "reference")
FLOAT_BYTES = 4
CHECK_TOLERANCE = 1e-3  # max |convlab - float64 reference| / max |reference|
MODEL_KERNEL = "mini_xception_train_step"

# ----------------------------------------------------------------------------------------
# geometry (Keras / TensorFlow rules)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1):
    """TensorFlow's "same" along one axis: (output size, padding before, padding after)."""
    out = -(-size // stride)
    span = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + span - size, 0)
    return out, total // 2, total - total // 2


def conv_axis(size: int, kernel: int, stride: int, padding: str, dilation: int = 1):
    """A conv or pool along one axis: (output size, padding before, padding after)."""
    if padding == "same":
        return same_padding(size, kernel, stride, dilation)
    if padding == "valid":
        span = (kernel - 1) * dilation + 1
        return (size - span) // stride + 1, 0, 0
    raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")


def transpose_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Keras' Conv2DTranspose output length (no output_padding, dilation 1)."""
    if padding == "same":
        return size * stride
    if padding == "valid":
        return size * stride + max(kernel - stride, 0)
    raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")


def axis_pairs(in_size: int, out_size: int, kernel: int, stride: int, pad_before: int,
               dilation: int = 1) -> int:
    """(output position, tap) pairs along one axis whose input position is inside the input."""
    return sum(1 for o in range(out_size) for t in range(kernel)
               if 0 <= o * stride - pad_before + t * dilation < in_size)


# ----------------------------------------------------------------------------------------
# what is measured


@dataclass(frozen=True)
class Case:
    """One problem size. family: conv2d, conv2d_transpose, depthwise_conv2d, max_pool2d,
    batch_norm or model. (n, h, w, c) is the input; filters is the conv's output channels,
    the depthwise conv's depth multiplier, or unused."""

    family: str
    n: int
    h: int
    w: int
    c: int
    filters: int = 0
    kernel: int = 3
    stride: int = 1
    padding: str = "same"

    @property
    def label(self) -> str:
        size = f"{self.h}x{self.w}x{self.c}"
        if self.family in ("conv2d", "conv2d_transpose"):
            text = f"{size}->{self.filters} {self.kernel}x{self.kernel}"
        elif self.family == "depthwise_conv2d":
            text = f"{size} {self.kernel}x{self.kernel}" + (f" m{self.filters}" if self.filters != 1 else "")
        elif self.family == "max_pool2d":
            text = f"{size} {self.kernel}x{self.kernel}"
        else:
            text = size
        if self.family != "batch_norm" and self.family != "model":
            text += f" s{self.stride} {self.padding}"
        return text

    # tensor shapes (NHWC; kernels in Keras layouts)
    def out_hw(self):
        if self.family == "conv2d_transpose":
            return (transpose_output_size(self.h, self.kernel, self.stride, self.padding),
                    transpose_output_size(self.w, self.kernel, self.stride, self.padding))
        if self.family in ("batch_norm", "model"):
            return self.h, self.w
        return (conv_axis(self.h, self.kernel, self.stride, self.padding)[0],
                conv_axis(self.w, self.kernel, self.stride, self.padding)[0])

    @property
    def x_shape(self):
        return (self.n, self.h, self.w, self.c)

    @property
    def y_shape(self):
        oh, ow = self.out_hw()
        channels = {"conv2d": self.filters, "conv2d_transpose": self.filters,
                    "depthwise_conv2d": self.c * self.filters}.get(self.family, self.c)
        return (self.n, oh, ow, channels)

    @property
    def kernel_shape(self):
        k = self.kernel
        if self.family == "conv2d":
            return (k, k, self.c, self.filters)
        if self.family == "conv2d_transpose":
            return (k, k, self.filters, self.c)  # (kh, kw, cout, cin), as Keras
        if self.family == "depthwise_conv2d":
            return (k, k, self.c, self.filters)
        return None

    def shrunk(self) -> "Case":
        """The same problem at a size the host executor runs in milliseconds (dry run):
        batch 2, at most 9 or 10 pixels a side (the parity kept, so the padding split is
        the same), at most 6 channels in and 5 out."""
        small = lambda size: min(size, 10 if size % 2 == 0 else 9)
        filters = self.filters if self.family == "depthwise_conv2d" else min(self.filters, 5)
        return dataclasses.replace(self, n=2, h=small(self.h), w=small(self.w), c=min(self.c, 6),
                                   filters=filters)


@dataclass
class Row:
    """One line of the results: a kernel, a variant, a case, and what was measured."""

    kernel: str
    variant: str
    case: Case
    status: str = "not run"  # "ok", "error", "skipped: budget", or "not run" (killed before)
    convlab_ms: Optional[float] = None
    cudnn_ms: Optional[float] = None
    repeats: Optional[int] = None
    check: Optional[float] = None  # max |convlab - reference| / max |reference|
    cudnn_check: Optional[float] = None  # the same for the timed torch call, where aligned
    error: Optional[str] = None  # why convlab's call failed
    torch_error: Optional[str] = None  # why the torch call failed
    torch_op: Optional[str] = None  # what the torch side ran
    note: Optional[str] = None
    extra: dict = field(default_factory=dict)  # the model row: images/s, parameter counts

    @property
    def torch_key(self):
        """torch is timed once per kernel and case and shared by both variants' rows."""
        return (self.kernel, self.case)


def conv_cases(batch=BATCH):
    c = lambda h, w, cin, cout: Case("conv2d", batch, h, w, cin, cout)
    return [c(180, 180, 3, 32), c(89, 89, 32, 64), c(45, 45, 128, 256), c(22, 22, 256, 512),
            c(100, 100, 64, 64)]


def define_rows(batch: int = BATCH, model: bool = True, model_batch: int = MODEL_BATCH,
                model_size: int = MODEL_SIZE):
    """Every row of the results, in table order (each case's passes, each pass's variants)."""
    groups = []  # (kernels, cases)
    passes = ("forward", "backward_input", "backward_kernel")
    groups.append(([f"conv2d_{p}" for p in passes], conv_cases(batch)))
    groups.append(([f"conv2d_transpose_{p}" for p in passes],
                   [Case("conv2d_transpose", batch, 50, 50, 128, 128, 3, 2, "same")]))
    groups.append(([f"depthwise_conv2d_{p}" for p in passes],
                   [Case("depthwise_conv2d", batch, s, s, ch, 1) for s, ch in
                    ((90, 64), (45, 128), (23, 256))]))
    groups.append((["max_pool2d_forward", "max_pool2d_backward"],
                   [Case("max_pool2d", batch, 90, 90, 64, 0, 3, 2, "same")]))
    groups.append((["batch_norm_forward_training", "batch_norm_backward"],
                   [Case("batch_norm", batch, 90, 90, 64, 0, 0, 1, "")]))
    rows = []
    for kernels, cases in groups:
        for case in cases:
            for kernel in kernels:
                for variant in VARIANTS:
                    rows.append(Row(kernel, variant, case))
    if model:
        rows.append(Row(MODEL_KERNEL, "fast",
                        Case("model", model_batch, model_size, model_size, 3, 1, 0, 1, "")))
    return rows


def select_rows(rows, kernels=None, variants=None, model=True):
    """The rows whose kernel name starts with one of `kernels` (a list of prefixes) and
    whose variant is in `variants`; None keeps all."""
    kept = []
    for row in rows:
        if row.kernel == MODEL_KERNEL:
            if model:
                kept.append(row)
            continue
        if kernels and not any(row.kernel.startswith(k) for k in kernels):
            continue
        if variants and row.variant not in variants:
            continue
        kept.append(row)
    return kept


def execution_order(rows):
    """The order rows run in: every fast row, then the model, then the reference rows, so
    that a budget cut drops the slow reference kernels first. Tables keep `rows`' order."""
    rank = lambda row: 1 if row.kernel == MODEL_KERNEL else (0 if row.variant == "fast" else 2)
    return sorted(rows, key=rank)  # stable


# ----------------------------------------------------------------------------------------
# work per measurement


def multiply_adds(kernel: str, case: Case) -> Optional[int]:
    """Multiply-adds with both operands real (taps inside the input) for the conv kernels;
    None for pooling and batch norm (counted in bytes)."""
    k, s = case.kernel, case.stride
    if case.family in ("conv2d", "depthwise_conv2d"):
        oh, top, _ = conv_axis(case.h, k, s, case.padding)
        ow, left, _ = conv_axis(case.w, k, s, case.padding)
        taps = axis_pairs(case.h, oh, k, s, top) * axis_pairs(case.w, ow, k, s, left)
        per_tap = case.c * case.filters  # conv: cin * cout; depthwise: channels * multiplier
        return case.n * taps * per_tap
    if case.family == "conv2d_transpose":
        # The transposed conv is the input gradient of the conv from its output (size
        # out_h) to its input (size h): the same (position, tap) pairs as that conv.
        out_h, out_w = case.out_hw()
        gh, top, _ = conv_axis(out_h, k, s, case.padding)
        gw, left, _ = conv_axis(out_w, k, s, case.padding)
        assert (gh, gw) == (case.h, case.w), "transposed-conv geometry does not round-trip"
        taps = axis_pairs(out_h, case.h, k, s, top) * axis_pairs(out_w, case.w, k, s, left)
        return case.n * taps * case.c * case.filters
    return None


def flops(kernel: str, case: Case) -> Optional[int]:
    macs = multiply_adds(kernel, case)
    return None if macs is None else 2 * macs


def _elements(shape) -> int:
    return math.prod(shape) if shape else 0


def bytes_moved(kernel: str, case: Case) -> Optional[int]:
    """Compulsory fp32 traffic: each tensor the kernel reads or writes, once."""
    x, y, w = _elements(case.x_shape), _elements(case.y_shape), _elements(case.kernel_shape)
    if case.family in ("conv2d", "conv2d_transpose", "depthwise_conv2d"):
        # forward: read x and the kernel, write y; input gradient: read grad_y and the
        # kernel, write grad_x; kernel gradient: read x and grad_y, write grad_kernel.
        tensors = x + w + y
    elif kernel == "max_pool2d_forward":
        tensors = x + y  # read x, write y
    elif kernel == "max_pool2d_backward":
        tensors = x + y + x  # read x (the argmax is recomputed) and grad_y, write grad_x
    elif kernel == "batch_norm_forward_training":
        tensors = 2 * x  # read x, write y
    elif kernel == "batch_norm_backward":
        tensors = 3 * x  # read x and grad_y, write grad_x
    else:
        return None
    return FLOAT_BYTES * tensors


def bound(kernel: str) -> Optional[str]:
    """Which hardware limit a kernel is held against: "compute" (the dense convs) or
    "memory" (depthwise convs, pooling, batch norm: a few flops per byte)."""
    if kernel == MODEL_KERNEL:
        return None
    if kernel.startswith(("conv2d_forward", "conv2d_backward", "conv2d_transpose")):
        return "compute"
    return "memory"


def achieved(row: Row, limits: dict):
    """(value, unit, percent of the measured limit) for a row timed by convlab, else Nones."""
    if row.convlab_ms is None or row.kernel == MODEL_KERNEL:
        return None, None, None
    seconds = row.convlab_ms * 1e-3
    if bound(row.kernel) == "compute":
        value, unit, limit = flops(row.kernel, row.case) / seconds / 1e12, "TFLOP/s", limits.get("tflops")
    else:
        value, unit, limit = bytes_moved(row.kernel, row.case) / seconds / 1e9, "GB/s", limits.get("gbps")
    percent = 100.0 * value / limit if limit else None
    return value, unit, percent


def fake_ms(row: Row, library: str) -> float:
    """Dry-run timings: made up from the work counts (convlab at 40% of the fake limits,
    torch at 60%). They exercise the writers and mean nothing."""
    share = 0.4 if library == "convlab" else 0.6
    if row.kernel == MODEL_KERNEL:
        return 100.0 if library == "convlab" else 20.0
    if bound(row.kernel) == "compute":
        return 1e3 * flops(row.kernel, row.case) / (share * FAKE_LIMITS["tflops"] * 1e12)
    return 1e3 * bytes_moved(row.kernel, row.case) / (share * FAKE_LIMITS["gbps"] * 1e9)


FAKE_LIMITS = {"gbps": 0.1, "tflops": 0.001, "copy_bytes": 0, "matmul_n": 0, "fake": True}


# ----------------------------------------------------------------------------------------
# the time budget and the loop over rows


class Budget:
    """A total time allowance; `clock` is injectable for tests."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def exceeded(self) -> bool:
        return self.elapsed() >= self.seconds


def one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_rows(rows, measure: Callable[[Row], None], budget: Budget,
             on_progress: Callable[[list], None] = lambda rows: None,
             log: Callable[[str], None] = print):
    """Measures each row in execution order; a row that raises records its error and the
    loop goes on; once the budget is spent the remaining rows are "skipped: budget".
    on_progress(rows) runs after every row (the writers: a killed run keeps its rows)."""
    ordered = execution_order(rows)
    for index, row in enumerate(ordered, 1):
        if budget.exceeded():
            row.status = "skipped: budget"
            continue
        try:
            measure(row)
            row.status = "error" if row.error else "ok"
        except Exception as error:  # noqa: BLE001 - a failing row must not stop the run
            row.status, row.error = "error", one_line(error)
        log(f"[{index}/{len(ordered)} {budget.elapsed():6.1f}s] {describe(row)}")
        on_progress(rows)
    on_progress(rows)
    return rows


def describe(row: Row) -> str:
    ms = lambda v: "-" if v is None else f"{v:.3f} ms"
    text = (f"{row.kernel} {row.variant} {row.case.label}: {row.status}, convlab {ms(row.convlab_ms)}, "
            f"cuDNN {ms(row.cudnn_ms)}")
    if row.check is not None:
        text += f", check {row.check:.1e}"
    for what, value in (("error", row.error), ("torch error", row.torch_error)):
        if value:
            text += f", {what}: {value}"
    return text


def tally(rows) -> dict:
    counts = {"rows": len(rows), "ok": 0, "error": 0, "skipped": 0, "not run": 0,
              "check_fail": 0, "torch_error": 0}
    for row in rows:
        if row.status == "ok":
            counts["ok"] += 1
        elif row.status == "error":
            counts["error"] += 1
        elif row.status.startswith("skipped"):
            counts["skipped"] += 1
        else:
            counts["not run"] += 1
        if check_failed(row):
            counts["check_fail"] += 1
        if row.torch_error:
            counts["torch_error"] += 1
    return counts


def check_failed(row: Row) -> bool:
    return row.check is not None and not (row.check <= CHECK_TOLERANCE)  # NaN fails too


def summary_line(rows) -> str:
    t = tally(rows)
    return (f"{t['rows']} rows: {t['ok']} ok, {t['error']} error, {t['skipped']} skipped, "
            f"{t['not run']} not run; checks failed: {t['check_fail']}; torch errors: {t['torch_error']}")


# ----------------------------------------------------------------------------------------
# writers

COLUMNS = ("kernel", "variant", "shape", "convlab ms", "cuDNN ms", "ratio", "achieved",
           "% of limit", "check", "notes")


def fmt_value(value) -> str:
    """3 significant digits without exponents for the usual range: 2850, 25.3, 0.512."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) >= 1e-3 else f"{value:.1e}"


def fmt_ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def fmt_ratio(ours, theirs) -> str:
    """ours / cuDNN: above 1, convlab is slower."""
    if ours is None or theirs is None or theirs <= 0:
        return "-"
    return f"{ours / theirs:.2f}"


def fmt_check(row: Row) -> str:
    if row.check is None:
        return "-"
    return ("FAIL " if check_failed(row) else "") + f"{row.check:.1e}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def row_cells(row: Row, limits: dict):
    value, unit, percent = achieved(row, limits)
    if row.kernel == MODEL_KERNEL and row.extra.get("convlab_images_per_s"):
        achieved_text = f"{row.extra['convlab_images_per_s']:.1f} img/s"
    else:
        achieved_text = "-" if value is None else f"{fmt_value(value)} {unit}"
    notes = []
    if row.status not in ("ok",):
        notes.append(row.status if row.status != "error" else f"error: {row.error}")
    if row.torch_error:
        notes.append(f"torch error: {row.torch_error}")
    if row.cudnn_check is not None and not row.cudnn_check <= CHECK_TOLERANCE:
        notes.append(f"torch's own result is off by {row.cudnn_check:.1e} (TF32?)")
    if row.note:
        notes.append(row.note)
    return [row.kernel, row.variant, row.case.label, fmt_ms(row.convlab_ms), fmt_ms(row.cudnn_ms),
            fmt_ratio(row.convlab_ms, row.cudnn_ms), achieved_text,
            "-" if percent is None else f"{percent:.0f}%", fmt_check(row), "; ".join(notes)]


def format_markdown(meta: dict, limits: dict, rows) -> str:
    fake = bool(meta.get("dry_run"))
    lines = []
    title = "convlab CUDA kernels vs cuDNN (through PyTorch)"
    if fake:
        lines.append("**DRY RUN ON THE CPU: EVERY TIME BELOW IS FAKE** (made up from the work "
                     "counts; only the calls, shapes and checks are real).")
        lines.append("")
    lines.append(f"## {title} — {meta.get('device', '?')}")
    lines.append("")
    for key in ("date", "commit", "source_digest", "versions", "tf32", "timing", "streams", "layout",
                "counts", "torch_ops"):
        if meta.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {meta[key]}")
    if limits:
        limit_text = (f"{fmt_value(limits.get('gbps', 0))} GB/s device-to-device copy (read + write), "
                      f"{fmt_value(limits.get('tflops', 0))} TFLOP/s fp32 matmul (TF32 off)")
        if limits.get("fake"):
            limit_text = "FAKE: " + limit_text
        elif limits.get("error"):
            limit_text = f"not measured: {limits['error']}"
        lines.append(f"- limits measured in this run: {limit_text}")
    lines.append(f"- ratio = convlab ms / cuDNN ms (above 1: convlab is slower); achieved is "
                 f"convlab's; check = max |convlab - float64 torch reference| / max |reference| "
                 f"(FAIL above {CHECK_TOLERANCE:g})")
    lines.append(f"- {summary_line(rows)}")
    lines.append("")
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" if i < 3 or i >= 8 else "---:" for i in range(len(COLUMNS))) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(c) for c in row_cells(row, limits)) + " |")
    if fake:
        lines.append("")
        lines.append("**DRY RUN: FAKE TIMES.**")
    return "\n".join(lines) + "\n"


def row_record(row: Row, limits: dict) -> dict:
    value, unit, percent = achieved(row, limits)
    record = {
        "kernel": row.kernel, "variant": row.variant, "shape": row.case.label,
        "case": dataclasses.asdict(row.case), "status": row.status,
        "convlab_ms": row.convlab_ms, "cudnn_ms": row.cudnn_ms,
        "ratio": None if row.convlab_ms is None or not row.cudnn_ms else row.convlab_ms / row.cudnn_ms,
        "repeats": row.repeats, "flops": flops(row.kernel, row.case),
        "bytes": bytes_moved(row.kernel, row.case), "bound": bound(row.kernel),
        "achieved": value, "achieved_unit": unit, "percent_of_limit": percent,
        "check": row.check, "check_ok": None if row.check is None else not check_failed(row),
        "cudnn_check": row.cudnn_check, "error": row.error, "torch_error": row.torch_error,
        "torch_op": row.torch_op, "note": row.note,
    }
    record.update(row.extra)
    return record


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def format_json(meta: dict, limits: dict, rows) -> str:
    document = {"meta": meta, "limits": limits, "summary": tally(rows),
                "rows": [row_record(row, limits) for row in rows]}
    return json.dumps(_nan_to_none(document), indent=1, default=str) + "\n"


def write_atomic(path: str, text: str) -> None:
    """Writes through a temporary file and a rename: a run killed mid-write keeps the
    previous version."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_outputs(md_path, json_path, meta, limits, rows) -> None:
    if md_path:
        write_atomic(md_path, format_markdown(meta, limits, rows))
    if json_path:
        write_atomic(json_path, format_json(meta, limits, rows))


# ----------------------------------------------------------------------------------------
# timing statistics and identification


def clamp_repeats(seconds_per_call: float, target_s: float, low: int, high: int) -> int:
    """How many timed calls fit in target_s, between low and high."""
    if not seconds_per_call > 0:
        return high
    return max(low, min(high, int(target_s / seconds_per_call)))


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def relative_error(pairs) -> float:
    """max over pairs of max|a - b| / max|b|, for pairs of flat float sequences (tests)."""
    worst = 0.0
    for ours, ref in pairs:
        scale = max((abs(v) for v in ref), default=0.0) or 1.0
        worst = max(worst, max((abs(a - b) for a, b in zip(ours, ref)), default=0.0) / scale)
    return worst


SOURCE_GLOBS = ("csrc", "python/convlab")
SOURCE_SUFFIXES = (".py", ".h", ".hpp", ".cuh", ".cu", ".cpp", ".cc", ".txt", ".toml")
SOURCE_FILES = ("CMakeLists.txt", "pyproject.toml")


def source_digest(root: str) -> str:
    """sha256 (12 hex digits) over the sources that make the build: csrc/, python/convlab/
    and the build files. The same tree gives the same digest here and on the GPU machine
    (`python benches/gpu_bench.py --source-digest`), committed or not."""
    digest = hashlib.sha256()
    paths = [os.path.join(root, f) for f in SOURCE_FILES]
    for top in SOURCE_GLOBS:
        for directory, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            paths += [os.path.join(directory, f) for f in files
                      if f.endswith(SOURCE_SUFFIXES) and f != "cuda_resources.txt"]
    for path in sorted(set(paths)):
        if not os.path.isfile(path):
            continue
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:12]


def format_compact(document: dict) -> str:
    """A narrow text table from a results JSON (gpu_check.sh prints it at the end, where
    the GPU machine's output is cut to its last 12,000 characters)."""
    meta, rows = document.get("meta", {}), document.get("rows", [])
    limits = document.get("limits", {})
    lines = [("DRY RUN, FAKE TIMES: " if meta.get("dry_run") else "") + f"{meta.get('device', '?')}; "
             f"limits {fmt_value(limits.get('gbps'))} GB/s, {fmt_value(limits.get('tflops'))} TFLOP/s; "
             f"{meta.get('tf32', '').split(':')[0]}"]
    lines.append(f"{'kernel':<34} {'var':<4} {'shape':<26} {'convlab':>9} {'cuDNN':>9} {'ratio':>6} "
                 f"{'%lim':>5} {'check':>8}  status")
    for r in rows:
        ms = lambda v: "-" if v is None else f"{v:.3f}"
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        pct = "-" if r.get("percent_of_limit") is None else f"{r['percent_of_limit']:.0f}"
        check = "-" if r.get("check") is None else ("FAIL" if r.get("check_ok") is False else f"{r['check']:.0e}")
        status = r.get("status", "?")
        if status == "error":
            status = f"error: {(r.get('error') or '')[:60]}"
        elif r.get("torch_error"):
            status += f" (torch error: {r['torch_error'][:40]})"
        lines.append(f"{r['kernel'][:34]:<34} {r['variant'][:4]:<4} {r['shape'][:26]:<26} {ms(r.get('convlab_ms')):>9} "
                     f"{ms(r.get('cudnn_ms')):>9} {ratio:>6} {pct:>5} {check:>8}  {status}")
    summary = document.get("summary")
    if summary:
        lines.append(", ".join(f"{k} {v}" for k, v in summary.items()))
    return "\n".join(lines) + "\n"
