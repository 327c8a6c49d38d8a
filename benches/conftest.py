"""Side-by-side timing: each case runs convlab and PyTorch in the same session, and the
summary at the end prints both medians and their ratio (torch time / convlab time, so
above 1 means convlab is faster)."""

import os
import platform
import subprocess
from collections import defaultdict

import pytest

_medians = defaultdict(dict)  # case -> {"convlab": seconds, "torch": seconds}
_tables = defaultdict(lambda: defaultdict(dict))  # title -> row -> {column: text}


@pytest.fixture
def record(benchmark):
    """record(case, impl, fn): benchmarks fn and keeps its median for the summary."""

    def run(case, impl, fn, *args):
        benchmark.group = case
        benchmark.extra_info["impl"] = impl
        benchmark.pedantic(fn, args=args, rounds=int(os.environ.get("CONVLAB_BENCH_ROUNDS", 5)),
                           iterations=1, warmup_rounds=1)
        _medians[case][impl] = benchmark.stats.stats.median

    return run


@pytest.fixture
def record_value():
    """record_value(table, row, column, text): one cell of an extra table printed after the
    timings (peak memory, thread scaling: what is not a benchmark median)."""

    def put(table, row, column, text):
        _tables[table][row][column] = text

    return put


def _write_tables(write):
    for title, rows in _tables.items():
        columns = list(dict.fromkeys(column for cells in rows.values() for column in cells))
        first = max(len("case"), *(len(row) for row in rows))
        widths = [max(len(column), *(len(cells.get(column, "-")) for cells in rows.values())) for column in columns]
        write("")
        write(title)
        write("| " + " | ".join(["case".ljust(first)] + [c.rjust(w) for c, w in zip(columns, widths)]) + " |")
        write("|" + "|".join("-" * (w + 2) for w in [first] + widths) + "|")
        for row, cells in rows.items():
            write("| " + " | ".join([row.ljust(first)] + [cells.get(c, "-").rjust(w) for c, w in zip(columns, widths)])
                  + " |")


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def pytest_terminal_summary(terminalreporter):
    if not _medians and not _tables:
        return
    write = terminalreporter.write_line
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch
    from convlab import _cpu

    write("")
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    isa = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "no AVX2"
    write(f"convlab vs PyTorch {torch.__version__} (CPU), {cpu} ({isa}), {os.cpu_count()} cores, "
          f"convlab threads {_cpu.num_threads()}, torch threads {torch.get_num_threads()}, "
          f"commit {_commit()}")
    write(f"| {'case':<58} | {'convlab ms':>10} | {'torch ms':>9} | {'torch/convlab':>13} |")
    write(f"|{'-' * 60}|{'-' * 12}|{'-' * 11}|{'-' * 15}|")
    fmt = lambda t: f"{1e3 * t:.2f}" if t else "-"
    for case, times in _medians.items():
        if "convlab" not in times and "torch" not in times:
            continue
        ours, theirs = times.get("convlab"), times.get("torch")
        ratio = f"{theirs / ours:13.2f}" if ours and theirs else f"{'-':>13}"
        write(f"| {case:<58} | {fmt(ours):>10} | {fmt(theirs):>9} | {ratio} |")
    within = {case: times for case, times in _medians.items() if "separable" in times or "conv2d" in times}
    if within:
        write("")
        write("convlab's SeparableConv2D against its own Conv2D (conv2d / separable: the speed-up)")
        write(f"| {'case':<58} | {'separable ms':>12} | {'conv2d ms':>9} | {'speed-up':>8} |")
        write(f"|{'-' * 60}|{'-' * 14}|{'-' * 11}|{'-' * 10}|")
        for case, times in within.items():
            sep, full = times.get("separable"), times.get("conv2d")
            ratio = f"{full / sep:8.2f}" if sep and full else f"{'-':>8}"
            write(f"| {case:<58} | {fmt(sep):>12} | {fmt(full):>9} | {ratio} |")
    _write_tables(write)
