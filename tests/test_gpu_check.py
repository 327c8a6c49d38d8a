"""The GPU check (benches/gpu_check.sh, gpu_bench.py, gpu_sanitize.py) without a GPU.

Its one run on a GPU machine has to work the first time, so everything that does not need
a GPU is tested here: the work counts against brute-force loops, the rows, the budget, the
writers, the shell script's verdicts on sample logs, the sanitizer cases' coverage of every
kernel, and both dry runs end to end (every row's convlab call and torch equivalent run on
the CPU and are checked against each other)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHES = os.path.join(ROOT, "benches")
sys.path.append(BENCHES)  # after everything else: benches/ has a conftest.py of its own

import gpu_bench_core as core  # noqa: E402


# ----------------------------------------------------------------------------------------
# work counts


def brute_force_conv_macs(n, h, w, cin, cout, k, stride, padding, dilation=1):
    """Multiply-adds of a conv whose input tap is inside the input, one at a time."""
    oh, top, _ = core.conv_axis(h, k, stride, padding, dilation)
    ow, left, _ = core.conv_axis(w, k, stride, padding, dilation)
    count = 0
    for _ in range(n):
        for y in range(oh):
            for x in range(ow):
                for _co in range(cout):
                    for i in range(k):
                        for j in range(k):
                            for _ci in range(cin):
                                ih, iw = y * stride - top + i * dilation, x * stride - left + j * dilation
                                if 0 <= ih < h and 0 <= iw < w:
                                    count += 1
    return count


@pytest.mark.parametrize("h, w, cin, cout, k, stride, padding", [
    (5, 6, 2, 3, 3, 1, "same"),
    (6, 5, 3, 2, 3, 2, "same"),    # padding 0 before, 1 after
    (7, 7, 1, 2, 3, 2, "same"),    # padding 1 before, 1 after
    (7, 8, 2, 2, 5, 2, "same"),
    (6, 7, 2, 3, 3, 1, "valid"),
    (4, 4, 3, 1, 1, 2, "same"),
])
def test_conv_flops_count_only_real_multiply_adds(h, w, cin, cout, k, stride, padding):
    case = core.Case("conv2d", 2, h, w, cin, cout, k, stride, padding)
    expected = brute_force_conv_macs(2, h, w, cin, cout, k, stride, padding)
    for kernel in ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_kernel"):
        assert core.multiply_adds(kernel, case) == expected
        assert core.flops(kernel, case) == 2 * expected
    if padding == "valid":  # nothing is padded: every tap counts
        oh, ow = case.out_hw()
        assert expected == 2 * oh * ow * k * k * cin * cout


def test_depthwise_flops_against_brute_force():
    for h, w, c, m, stride in ((5, 6, 3, 1, 1), (7, 6, 2, 2, 2)):
        case = core.Case("depthwise_conv2d", 2, h, w, c, m, 3, stride, "same")
        # a depthwise conv is, per channel, a 1-in m-out conv
        per_channel = brute_force_conv_macs(2, h, w, 1, m, 3, stride, "same")
        assert core.multiply_adds("depthwise_conv2d_forward", case) == c * per_channel


@pytest.mark.parametrize("h, w, k, stride, padding", [(5, 6, 3, 2, "same"), (4, 5, 3, 2, "valid"),
                                                      (3, 3, 2, 2, "same"), (4, 4, 3, 1, "same")])
def test_transposed_conv_flops_against_brute_force_scatter(h, w, k, stride, padding):
    """Each input pixel scatters to the output pixels its taps reach: the transposed conv's
    multiply-adds, counted directly from Keras' output size and TF's padding."""
    cin, cout, n = 2, 3, 2
    case = core.Case("conv2d_transpose", n, h, w, cin, cout, k, stride, padding)
    out_h, out_w = case.out_hw()
    assert (out_h, out_w) == (core.transpose_output_size(h, k, stride, padding),
                              core.transpose_output_size(w, k, stride, padding))
    _, top, _ = core.conv_axis(out_h, k, stride, padding)
    _, left, _ = core.conv_axis(out_w, k, stride, padding)
    count = 0
    for i in range(h):
        for j in range(w):
            for a in range(k):
                for b in range(k):
                    oy, ox = i * stride - top + a, j * stride - left + b
                    count += (0 <= oy < out_h and 0 <= ox < out_w)
    assert core.multiply_adds("conv2d_transpose_forward", case) == n * cin * cout * count


def test_the_benchmark_conv_counts():
    # 180x180x3->32 3x3 same: 32 * (3*180 - 2)^2 taps * 3 * 32 multiply-adds
    case = core.conv_cases()[0]
    assert core.flops("conv2d_forward", case) == 2 * 32 * (3 * 180 - 2) ** 2 * 3 * 32


def test_bytes_are_each_tensor_once():
    f = core.FLOAT_BYTES
    conv = core.Case("conv2d", 2, 6, 6, 3, 4, 3, 2, "same")  # y (2, 3, 3, 4)
    x, y, w = 2 * 6 * 6 * 3, 2 * 3 * 3 * 4, 3 * 3 * 3 * 4
    for kernel in ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_kernel"):
        assert core.bytes_moved(kernel, conv) == f * (x + y + w)
    pool = core.Case("max_pool2d", 2, 10, 10, 3, 0, 3, 2, "same")  # y (2, 5, 5, 3)
    assert core.bytes_moved("max_pool2d_forward", pool) == f * (600 + 150)
    assert core.bytes_moved("max_pool2d_backward", pool) == f * (600 + 150 + 600)
    bn = core.Case("batch_norm", 2, 5, 5, 4, 0, 0, 1, "")
    assert core.bytes_moved("batch_norm_forward_training", bn) == f * 2 * 200
    assert core.bytes_moved("batch_norm_backward", bn) == f * 3 * 200
    dw = core.Case("depthwise_conv2d", 1, 4, 4, 3, 2, 3, 1, "same")
    assert core.bytes_moved("depthwise_conv2d_forward", dw) == f * (48 + 96 + 54)  # x, y, (3, 3, 3, 2)
    assert core.bound("depthwise_conv2d_forward") == "memory"
    assert core.bound("conv2d_transpose_backward_kernel") == "compute"


def test_same_padding_is_tensorflows():
    assert core.same_padding(90, 3, 2) == (45, 0, 1)
    assert core.same_padding(11, 3, 2) == (6, 1, 1)
    assert core.same_padding(100, 3, 1) == (100, 1, 1)
    assert core.same_padding(4, 1, 2) == (2, 0, 0)


# ----------------------------------------------------------------------------------------
# rows, budget, writers


def test_rows_cover_the_brief():
    rows = core.define_rows()
    kinds = {}
    for row in rows:
        kinds.setdefault(row.case.family, []).append(row)
    assert len(kinds["conv2d"]) == 5 * 3 * 2
    assert len(kinds["conv2d_transpose"]) == 3 * 2
    assert len(kinds["depthwise_conv2d"]) == 3 * 3 * 2
    assert len(kinds["max_pool2d"]) == 2 * 2 and len(kinds["batch_norm"]) == 2 * 2
    assert [r.kernel for r in kinds["model"]] == [core.MODEL_KERNEL]
    assert {r.case.n for r in rows if r.case.family != "model"} == {32}
    labels = {r.case.label for r in kinds["conv2d"]}
    assert "22x22x256->512 3x3 s1 same" in labels and "100x100x64->64 3x3 s1 same" in labels
    assert kinds["model"][0].case.x_shape == (16, 180, 180, 3)
    # every (kernel, case) has a fast and a reference row, sharing one torch timing
    keys = {}
    for row in rows:
        keys.setdefault(row.torch_key, set()).add(row.variant)
    assert all(v == {"fast", "reference"} for k, v in keys.items() if k[0] != core.MODEL_KERNEL)


def test_fast_rows_run_first_then_the_model_then_reference():
    order = core.execution_order(core.define_rows())
    variants = [("model" if r.kernel == core.MODEL_KERNEL else r.variant) for r in order]
    first_model = variants.index("model")
    assert set(variants[:first_model]) == {"fast"}
    assert set(variants[first_model + 1:]) == {"reference"}


def test_select_rows():
    rows = core.select_rows(core.define_rows(), ["max_pool2d"], ["fast"], model=False)
    assert [(r.kernel, r.variant) for r in rows] == [("max_pool2d_forward", "fast"), ("max_pool2d_backward", "fast")]


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_budget_skips_the_rest_and_a_failing_row_does_not_stop_the_run():
    clock = FakeClock()
    budget = core.Budget(10, clock)
    rows = core.select_rows(core.define_rows(), ["conv2d_forward"], ["fast"], model=False)
    assert len(rows) == 5
    seen, progress = [], []

    def measure(row):
        seen.append(row.case.label)
        clock.t += 4  # each row takes 4 s: the third ends at 12 s, past the budget of 10 s
        if len(seen) == 2:
            raise RuntimeError("conv2d_forward: launch failed | badly\nsecond line")
        row.convlab_ms, row.cudnn_ms = 2.0, 1.0

    core.run_rows(rows, measure, budget, on_progress=lambda r: progress.append(core.tally(r)),
                  log=lambda text: None)
    assert [r.status for r in rows] == ["ok", "error", "ok", "skipped: budget", "skipped: budget"]
    assert rows[1].error == "RuntimeError: conv2d_forward: launch failed | badly second line"
    assert len(seen) == 3
    assert progress[-1]["skipped"] == 2 and progress[-1]["error"] == 1 and len(progress) == 4
    assert budget.exceeded() and budget.left() == -2


def test_repeats_fit_the_target():
    assert core.clamp_repeats(0.01, 0.25, 3, 50) == 25
    assert core.clamp_repeats(1.0, 0.25, 3, 50) == 3
    assert core.clamp_repeats(1e-6, 0.25, 3, 50) == 50
    assert core.clamp_repeats(0.0, 0.25, 3, 50) == 50


def sample_rows():
    cases = core.conv_cases()
    ok = core.Row("conv2d_forward", "fast", cases[2], status="ok", convlab_ms=3.0, cudnn_ms=2.0, check=2e-7)
    bad = core.Row("conv2d_forward", "reference", cases[2], status="error",
                   error="RuntimeError: conv2d_forward_reference: an | in the text")
    skipped = core.Row("conv2d_backward_input", "fast", cases[2], status="skipped: budget")
    off = core.Row("max_pool2d_forward", "fast", core.Case("max_pool2d", 32, 90, 90, 64, 0, 3, 2, "same"),
                   status="ok", convlab_ms=0.05, cudnn_ms=0.04, check=0.5, torch_error=None)
    model = core.Row(core.MODEL_KERNEL, "fast", core.Case("model", 16, 180, 180, 3, 1, 0, 1, ""),
                     status="ok", convlab_ms=200.0, cudnn_ms=25.0, extra={"convlab_images_per_s": 80.0})
    return [ok, bad, skipped, off, model]


def test_markdown_table():
    limits = {"gbps": 4000.0, "tflops": 50.0}
    meta = {"device": "NVIDIA H200", "date": "2026-12-02", "commit": "abc1234", "tf32": "TF32 off: ..."}
    text = core.format_markdown(meta, limits, sample_rows())
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| kernel"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(core.COLUMNS)
    assert list(core.COLUMNS[:9]) == ["kernel", "variant", "shape", "convlab ms", "cuDNN ms", "ratio",
                                      "achieved", "% of limit", "check"]
    table = [line for line in lines if line.startswith("| ") and line != header]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in table]
    assert len(cells) == 5 and all(len(c) == len(core.COLUMNS) for c in cells)
    ok, bad, skipped, off, model = cells
    flops = core.flops("conv2d_forward", core.conv_cases()[2])
    tflops = flops / 3e-3 / 1e12
    assert ok[3:9] == ["3.000", "2.000", "1.50", f"{tflops:.3g} TFLOP/s", f"{100 * tflops / 50:.0f}%", "2.0e-07"]
    assert bad[3:6] == ["-", "-", "-"] and "error: RuntimeError" in bad[9] and "an \\| in the text" in bad[9]
    assert skipped[9] == "skipped: budget" and skipped[3] == "-"
    assert off[8] == "FAIL 5.0e-01" and off[6].endswith("GB/s")
    assert model[5] == "8.00" and model[6] == "80.0 img/s" and model[7] == "-"
    assert "NVIDIA H200" in text and "abc1234" in text and "TF32 off" in text and "FAKE" not in text
    assert "checks failed: 1" in text


def test_markdown_says_fake_in_a_dry_run():
    text = core.format_markdown({"dry_run": True, "device": "cpu"}, dict(core.FAKE_LIMITS), sample_rows())
    assert text.startswith("**DRY RUN") and "FAKE" in text.splitlines()[-1]


def test_json_has_the_same_rows():
    limits = {"gbps": 4000.0, "tflops": 50.0}
    document = json.loads(core.format_json({"device": "x"}, limits, sample_rows()))
    rows = document["rows"]
    assert [r["status"] for r in rows] == ["ok", "error", "skipped: budget", "ok", "ok"]
    assert rows[0]["ratio"] == 1.5 and rows[0]["check_ok"] is True and rows[0]["achieved_unit"] == "TFLOP/s"
    assert rows[0]["flops"] == core.flops("conv2d_forward", core.conv_cases()[2])
    assert rows[1]["error"].startswith("RuntimeError") and rows[1]["ratio"] is None
    assert rows[3]["check_ok"] is False and rows[4]["convlab_images_per_s"] == 80.0
    assert document["summary"]["check_fail"] == 1 and document["summary"]["skipped"] == 1
    compact = core.format_compact(document)
    assert "conv2d_forward" in compact and "FAIL" in compact and "error: RuntimeError" in compact


def test_writers_are_atomic(tmp_path):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    core.write_outputs(str(md), str(js), {"device": "x"}, {}, sample_rows())
    assert md.read_text().count("\n| conv2d_forward") == 2 and json.loads(js.read_text())["rows"]
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.md"]  # no temporary left


def test_source_digest_is_stable_and_sees_the_sources(tmp_path):
    for name in ("CMakeLists.txt", "csrc/cuda/a.cuh", "python/convlab/k.py"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("one")
    first = core.source_digest(str(tmp_path))
    (tmp_path / "python/convlab/__pycache__").mkdir()
    (tmp_path / "python/convlab/__pycache__/k.pyc").write_text("ignored")
    assert core.source_digest(str(tmp_path)) == first
    (tmp_path / "csrc/cuda/a.cuh").write_text("two")
    assert core.source_digest(str(tmp_path)) != first


# ----------------------------------------------------------------------------------------
# the torch side, on the CPU


def test_tf_same_max_pool_in_torch_matches_convlab():
    torch = pytest.importorskip("torch")
    import gpu_bench
    from convlab import kernels

    rng = np.random.default_rng(0)
    for size in (9, 10, 11, 90):  # padding before 1, 0, 1, 0: both branches
        x = rng.standard_normal((2, size, size + 1, 3)).astype(np.float32)
        ours = kernels.max_pool2d_forward(x, 3, 2, "same")
        theirs = gpu_bench.torch_max_pool_same(torch, gpu_bench.nchw(torch.from_numpy(x)), 3, 2)
        np.testing.assert_array_equal(theirs.permute(0, 2, 3, 1).numpy(), ours)


@pytest.mark.parametrize("case", [
    core.Case("conv2d", 2, 6, 7, 3, 4, 3, 2, "same"),         # padding 0 before, 1 after
    core.Case("conv2d", 2, 7, 7, 3, 4, 3, 1, "same"),
    core.Case("depthwise_conv2d", 2, 6, 6, 3, 2, 3, 2, "same"),
    core.Case("conv2d_transpose", 2, 4, 5, 3, 2, 3, 2, "same"),
    core.Case("max_pool2d", 2, 9, 11, 3, 0, 3, 2, "same"),    # padding 1 before: F.pad
    core.Case("max_pool2d", 2, 10, 10, 3, 0, 3, 2, "same"),   # ceil_mode
    core.Case("batch_norm", 2, 5, 4, 3, 0, 0, 1, ""),
], ids=lambda case: f"{case.family} {case.label}")
def test_torch_equivalents_agree_with_convlab(case):
    """The timed torch call, the float64 torch reference and convlab's CPU kernels agree,
    including the shapes the benchmark does not use (padding only after, or before)."""
    torch = pytest.importorskip("torch")
    import gpu_bench

    d = gpu_bench.make_data(case, torch)
    side = gpu_bench.TorchSide(torch, "cpu", case, d)
    kernels = {"conv2d": ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_kernel"],
               "max_pool2d": ["max_pool2d_forward", "max_pool2d_backward"],
               "batch_norm": ["batch_norm_forward_training", "batch_norm_backward"]}
    kernels["depthwise_conv2d"] = [k.replace("conv2d", "depthwise_conv2d") for k in kernels["conv2d"]]
    kernels["conv2d_transpose"] = [k.replace("conv2d", "conv2d_transpose") for k in kernels["conv2d"]]
    for kernel in kernels[case.family]:
        reference = side.reference(kernel)
        ours = gpu_bench.as_outputs(gpu_bench.convlab_call(kernel, case, d, "fast")())
        assert gpu_bench.relative_error(torch, ours, reference, side.tensor) < 1e-5, kernel
        with torch.no_grad():
            fn, to_ours, op = side.timed(kernel)
            out = fn()
        if to_ours is None:  # the transposed conv: torch's own padding, Keras' sizes
            what = "kernel" if kernel.endswith("backward_kernel") else "y"
            assert case.family == "conv2d_transpose", op
            assert side.to_ours(out, what).shape == reference[0].shape, op
        else:
            assert gpu_bench.relative_error(torch, to_ours(out), reference, side.tensor) < 1e-5, op


def test_torch_mini_xception_has_convlabs_parameters():
    torch = pytest.importorskip("torch")
    import gpu_bench
    from convlab import applications

    model = applications.mini_xception()
    ours = sum(int(v.data.size) for v in model.trainable_weights)
    theirs = sum(p.numel() for p in gpu_bench.torch_mini_xception(torch).parameters())
    assert ours == theirs == 718_849
    small = gpu_bench.torch_mini_xception(torch, (4, 8))
    assert small(torch.zeros(2, 3, 20, 20)).shape == (2, 1)


def test_bench_arguments():
    import gpu_bench

    args = gpu_bench.parse_args(["--kernels", "conv2d,max_pool", "--variants", "fast", "--budget-s", "30"])
    assert args.kernels == ["conv2d", "max_pool"] and args.variants == ["fast"] and args.budget_s == 30
    with pytest.raises(SystemExit):
        gpu_bench.parse_args(["--variants", "fastest"])


def run_python(args, tmp_path, env=None):
    return subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_bench_dry_run_end_to_end(tmp_path):
    """Every row's convlab call (CUDA kernels on the host executor) and its torch
    equivalent run at shrunken shapes, and agree with the float64 reference."""
    pytest.importorskip("torch")
    md, js = tmp_path / "dry.md", tmp_path / "dry.json"
    result = run_python(["benches/gpu_bench.py", "--dry-run", "--out", str(md), "--json", str(js)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BENCH SUMMARY" in result.stdout and "FAKE" in result.stdout
    document = json.loads(js.read_text())
    assert document["meta"]["dry_run"] is True and document["limits"]["fake"] is True
    rows = document["rows"]
    assert len(rows) == len(core.define_rows())
    for row in rows:
        if row["status"] == "error":  # only a kernel family that is not written yet may fail
            assert "not written yet" in row["error"], row
            continue
        assert row["status"] == "ok", row
        assert row["torch_error"] is None, row
        if row["kernel"] != core.MODEL_KERNEL:
            assert row["check_ok"] is True, row
            assert row["percent_of_limit"] == pytest.approx(40.0)  # the fake rates
            assert row["ratio"] == pytest.approx(1.5)
            if row["cudnn_check"] is not None:  # the timed torch call computes the same thing
                assert row["cudnn_check"] < core.CHECK_TOLERANCE, row
    model = rows[-1]
    assert model["kernel"] == core.MODEL_KERNEL and model["convlab_trainable_params"] == model["torch_params"]
    text = md.read_text()
    assert text.startswith("**DRY RUN") and "TF32 off" in text


# ----------------------------------------------------------------------------------------
# the sanitizer cases


def test_sanitizer_cases_reach_every_kernel_and_launch_path():
    import gpu_sanitize

    report = gpu_sanitize.execute("plan", log=lambda text: None)
    failures = [f for f in report["failures"] if "not written yet" not in f]
    assert not failures and not report["missing"]
    launched = {k for launches in report["launches"].values() for k, _ in launches}
    written = {n for n in gpu_sanitize.source_kernel_names(ROOT)
               if not any(n.startswith(f.split("[")[0]) for f in report["failures"])}
    assert written, "no kernel names found in csrc/cuda/*.cuh"
    assert not written - launched, (
        f"kernels no case of benches/gpu_sanitize.py launches: {sorted(written - launched)}; add a case")

    def launches_of(op, label):
        return report["launches"][f"{op}[{label}] fast float32"]

    # split-K with one split and with several; batch-norm reductions with one and several splits
    names = lambda op, label: [kernel for kernel, _ in launches_of(op, label)]
    assert names("conv2d_backward_kernel", "1x3x3x2->3 k2 tiny") == ["conv2d_backward_kernel_split"]
    assert "conv2d_backward_kernel_reduce_splits" in names("conv2d_backward_kernel", "2x7x9x3->5 k3 valid +bias")
    grid = dict(launches_of("batch_norm_forward_training", "2x24x24x3 (1152 rows)"))["batch_norm_statistics_split"]
    assert grid[1] > 1
    grid = dict(launches_of("batch_norm_forward_training", "2x5x7x6"))["batch_norm_statistics_split"]
    assert grid[1] == 1
    # more than one tile in both GEMM dimensions
    grid = dict(launches_of("conv2d_forward", "2x9x9x5->70 k3 same"))["conv2d_forward_tiled"]
    assert grid[0] > 1 and grid[1] > 1


def test_sanitizer_cases_run_on_the_host_executor():
    import gpu_sanitize

    report = gpu_sanitize.execute("host", log=lambda text: None)
    failures = [f for f in report["failures"] if "not written yet" not in f]
    assert report["calls"] > 100 and not failures and not report["mismatches"]


# ----------------------------------------------------------------------------------------
# the shell script


LIB = os.path.join(BENCHES, "gpu_check_lib.sh")
SANITIZE_LINE = ("SANITIZE SCRIPT (gpu): 336 calls ran in 3.1 s, 0 failed, 0 fast/reference mismatches, "
                 "0 kernels of convlab.kernels not covered")


def bash(script):
    result = subprocess.run(["bash", "-c", f"set -uo pipefail; source {LIB}; {script}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_script_parses():
    for name in ("gpu_check.sh", "gpu_check_lib.sh"):
        result = subprocess.run(["bash", "-n", os.path.join(BENCHES, name)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("tool, rc, log, verdict", [
    ("memcheck", 0, f"========= COMPUTE-SANITIZER\n{SANITIZE_LINE}\n========= ERROR SUMMARY: 0 errors\n", "ok"),
    ("memcheck", 3, "========= Invalid __global__ read of size 4 bytes\n========= ERROR SUMMARY: 2 errors\n",
     "FAIL (the sanitizer reported errors: ERROR SUMMARY: 2 errors)"),
    ("memcheck", 0, "========= ERROR SUMMARY: 0 errors\n", "FAIL (the script printed no summary)"),
    ("memcheck", 0, f"{SANITIZE_LINE}\n", "FAIL (no ERROR SUMMARY line)"),
    ("memcheck", 1, SANITIZE_LINE.replace("0 failed", "2 failed") + "\n========= ERROR SUMMARY: 0 errors\n",
     "FAIL (exit 1)"),
    ("racecheck", 0,
     f"{SANITIZE_LINE}\n========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)\n", "ok"),
    ("racecheck", 0, f"{SANITIZE_LINE}\n========= RACECHECK SUMMARY: 1 hazard displayed (0 errors, 1 warning)\n",
     "FAIL (1 hazard displayed (0 errors, 1 warning))"),
    ("racecheck", 124, "", "TIMEOUT after 120s"),
    ("racecheck", 200, "", "SKIPPED (time budget)"),
])
def test_sanitizer_verdicts(tmp_path, tool, rc, log, verdict):
    path = tmp_path / "log"
    path.write_text(log)
    assert bash(f"sanitizer_verdict {tool} {rc} {path} 120") == verdict


@pytest.mark.parametrize("rc, log, verdict", [
    (0, "....\n==== 24 passed, 1350 deselected in 30.12s ====\n", "ok"),
    (0, "sss\n24 skipped, 1350 deselected in 3.0s\n", "FAIL (no cuda test passed: all skipped?)"),
    (1, "F.\nFAILED tests/test_x.py::test_y\n1 failed, 23 passed, 1350 deselected in 30s\n", "FAIL (exit 1)"),
    (124, "", "TIMEOUT after 240s"),
])
def test_pytest_verdicts(tmp_path, rc, log, verdict):
    path = tmp_path / "log"
    path.write_text(log)
    assert bash(f"pytest_verdict {rc} {path} 240") == verdict


def test_pytest_tally_of_a_run_cut_short(tmp_path):
    path = tmp_path / "log"
    path.write_text("tests/test_a.py::test_x[1] PASSED      [  1%]\n"
                    "tests/test_a.py::test_x[2] FAILED      [  2%]\n"
                    "tests/test_a.py::test_y SKIPPED (needs a GPU) [  3%]\n")
    assert bash(f"pytest_line {path}") == "no tally (cut?): 1 passed, 1 failed, 1 skipped so far"
    path.write_text("SKIPPED [3] tests/test_a.py:9: needs a CUDA GPU\n"
                    "=========== 1 failed, 23 passed, 3 skipped, 1350 deselected in 31.02s ===========\n")
    assert bash(f"pytest_line {path}") == "1 failed, 23 passed, 3 skipped, 1350 deselected in 31.02s"


def test_step_timeouts_keep_the_later_steps_minimums():
    steps = "STEPS=(a:100:10 b:50:20 c:60:30); COLLECT_RESERVE=5"
    at = lambda seconds_left, name: bash(f"{steps}; DEADLINE=$(( $(date +%s) + {seconds_left} )); step_timeout {name}")
    assert at(1000, "a") == "100"          # its own cap
    assert at(100, "a") == "45"            # 100 - (20 + 30 + 5)
    assert at(60, "a") == "skip:5"         # its minimum (10) no longer fits
    assert at(100, "c") == "60"
    assert at(20, "c").startswith("skip:")


def test_the_script_dry_run(tmp_path):
    """GPU_CHECK_DRY_RUN=1: no build, no GPU; the sanitizer script on the host executor,
    the bench with fake times. Every step must come out ok (or skipped for the dry run)."""
    pytest.importorskip("torch")
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_DRY_RUN": "1", "OUT": str(out), "PYTHON": sys.executable,
           "GPU_BENCH_ARGS": "--kernels conv2d_transpose_forward,max_pool2d_forward --no-model"}
    result = subprocess.run(["bash", os.path.join(BENCHES, "gpu_check.sh")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    for step in ("env", "build", "info", "pytest", "memcheck", "racecheck", "bench"):
        assert f"\n{step} " in summary, summary
    assert "steps not ok: 0" in summary and "DRY RUN" in summary
    assert "BENCH SUMMARY: 4 rows: 4 ok" in summary
    assert summary.strip() in result.stdout  # the summary ends the output the GPU tool returns
    assert (out / "gpu_results.md").read_text().startswith("**DRY RUN")
    assert json.loads((out / "gpu_results.json").read_text())["summary"]["ok"] == 4
    assert (out / "gpu_results.txt").exists()
    for log in ("env", "info", "memcheck", "racecheck", "bench"):
        assert (out / "logs" / f"{log}.log").stat().st_size > 0
