"""python -m convlab: a failing command prints one line naming what is wrong and exits 2;
--debug (or CONVLAB_DEBUG) shows the exception and its traceback instead."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import convlab.__main__
from convlab import applications, utils

PYTHON_PATH = os.path.dirname(os.path.dirname(os.path.abspath(convlab.__file__)))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    utils.set_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    applications.mnist_convnet().save(path)
    return str(path)


def run(argv, capsys):
    code = convlab.__main__.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def one_error_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("convlab: error: ")
    return lines[0]


def test_visualize_with_a_missing_or_non_image_file_prints_one_line_naming_it(saved_model, tmp_path, capsys):
    missing = str(tmp_path / "digit.png")
    code, err = run(["visualize", saved_model, missing, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"image file {missing!r} does not exist" in one_error_line(err)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    code, err = run(["visualize", saved_model, str(text), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{str(text)!r} is not an image file" in one_error_line(err)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(good)
    code, err = run(["visualize", str(tmp_path / "no_model.keras"), str(good), "--out", str(tmp_path)], capsys)
    assert code == 2 and "no_model.keras" in one_error_line(err)


@pytest.mark.parametrize("argv, says", [
    (["train", "mnist", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    (["train", "mnist", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["train", "imagenet"], "invalid choice: 'imagenet'"),
    (["visualize", "model.keras"], "the following arguments are required: image, --out"),
    (["visualize", "m.keras", "i.png", "--out", "o", "--patterns", "0"], "--patterns must be >= 1, got 0"),
    (["visualize", "m.keras", "i.png", "--out", "o", "--iterations", "-1"], "--iterations must be >= 0, got -1"),
    (["info", "--verbose"], "unrecognized arguments: --verbose"),
    (["demo", "--outt", "x"], "unrecognized arguments: --outt x"),
    (["trian", "mnist"], "unknown command 'trian'"),
])
def test_bad_arguments_print_one_line_and_exit_2(argv, says, capsys):
    code, err = run(argv, capsys)
    assert code == 2
    assert says in one_error_line(err)


def test_debug_flag_or_variable_lets_the_exception_through(saved_model, tmp_path, monkeypatch, capsys):
    argv = ["visualize", saved_model, str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        convlab.__main__.main(argv + ["--debug"])
    monkeypatch.setenv("CONVLAB_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        convlab.__main__.main(argv)
    monkeypatch.setenv("CONVLAB_DEBUG", "0")
    assert convlab.__main__.main(argv) == 2
    one_error_line(capsys.readouterr().err)


def test_the_process_prints_no_traceback_and_exits_2(tmp_path):
    environment = dict(os.environ, PYTHONPATH=PYTHON_PATH)
    environment.pop("CONVLAB_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "convlab", "train", "mnist", "--epochs", "abc"],
                            capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["convlab: error: python -m convlab train: argument --epochs: invalid int "
                                          "value: 'abc' (see python -m convlab train --help)"]
