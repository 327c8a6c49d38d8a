"""Géron's chapter 14 architectures (convlab.applications.geron): parameter counts against
published totals, PyTorch modules built here and hand counts; the building blocks
(ResidualUnit, inception_module, squeeze_excite) against PyTorch with the same weights;
gradchecks of the new layers; and a few training steps of each net at a tiny size."""

import numpy as np
import pytest

import convlab
from convlab import applications, layers
from convlab.testing import gradcheck


def trainable_count(model):
    return sum(w.size for w in model.trainable_weights)


def torch_count(module):
    """Keras' total: torch parameters plus BatchNorm running means and variances (Keras
    counts its moving statistics as non-trainable parameters)."""
    buffers = sum(b.numel() for name, b in module.named_buffers() if not name.endswith("num_batches_tracked"))
    return sum(p.numel() for p in module.parameters()) + buffers


# ---------------------------------------------------------------------------- hand counts


def conv_params(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def test_lenet5_summary_matches_a_hand_count_of_table_14_1():
    model = applications.lenet5()
    assert [layer.output.shape[1:] for layer in model.layers] == [
        (32, 32, 1), (28, 28, 6), (14, 14, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (5, 5, 16), (1, 1, 120),
        (120,), (84,), (10,)]
    c1, c3, c5 = conv_params(5, 1, 6), conv_params(5, 6, 16), conv_params(5, 16, 120)
    s2, s4 = 2 * 6, 2 * 16  # one coefficient and one bias per map
    f6, out = 120 * 84 + 84, 84 * 10 + 10
    assert (c1, c3, c5, f6) == (156, 2416, 48120, 10164)  # LeCun's C1, C5, F6 (his C3 is sparse: 1,516)
    assert model.count_params() == c1 + s2 + c3 + s4 + c5 + f6 + out == 61_750
    assert applications.lenet5(trainable_subsampling=False).count_params() == 61_750 - s2 - s4


def test_fashion_mnist_convnet_matches_a_hand_count():
    model = applications.fashion_mnist_convnet()
    convs = (conv_params(7, 1, 64) + conv_params(3, 64, 128) + conv_params(3, 128, 128) + conv_params(3, 128, 256)
             + conv_params(3, 256, 256))
    dense = (3 * 3 * 256 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10)
    assert model.count_params() == convs + dense == 1_413_834


def test_alexnet_follows_table_14_2():
    model = applications.alexnet(include_top=False)
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert [shapes[n] for n in ("c1", "s2", "c3", "s4", "c5", "c6", "c7")] == [
        (55, 55, 96), (27, 27, 96), (27, 27, 256), (13, 13, 256), (13, 13, 384), (13, 13, 384), (13, 13, 256)]
    convs = (conv_params(11, 3, 96) + conv_params(5, 96, 256) + conv_params(3, 256, 384) + conv_params(3, 384, 384)
             + conv_params(3, 384, 256))
    assert model.count_params() == convs == 3_747_200
    assert isinstance(model.get_layer("c1_lrn"), layers.LocalResponseNormalization)
    assert (model.get_layer("c1_lrn").depth_radius, model.get_layer("c1_lrn").alpha) == (2, 0.00002)


def test_alexnet_with_the_papers_last_pooling_has_its_published_62_million_parameters():
    model = applications.alexnet(final_pooling=True)
    assert model.get_layer("s8").output.shape[1:] == (6, 6, 256)
    assert model.count_params() == 62_378_344  # Krizhevsky et al.'s network, single-tower count


def test_full_size_resnets_and_xception_match_published_counts():
    """Trainable counts: torchvision's resnet34 (21,797,672) and resnet50 (25,557,032), timm's
    seresnet50 (28,088,024); Xception: keras.applications.Xception's summary (22,910,480 total,
    22,855,952 trainable). The rest of each total is the BN moving means and variances."""
    expected = {applications.resnet34: (21_797_672, 21_814_696), applications.geron_resnet50: (25_557_032, 25_610_152),
                applications.geron_xception: (22_855_952, 22_910_480)}
    for build, (trainable, total) in expected.items():
        model = build()
        assert (trainable_count(model), model.count_params()) == (trainable, total), build.__name__
    assert trainable_count(applications.geron_resnet50(squeeze_excite=True)) == 28_088_024


# ---------------------------------------------------------------------------- PyTorch oracles


def torch_lenet5(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.AvgPool2d(2), nn.Conv2d(6, 6, 1, groups=6), nn.Conv2d(6, 16, 5),
                         nn.AvgPool2d(2), nn.Conv2d(16, 16, 1, groups=16), nn.Conv2d(16, 120, 5), nn.Flatten(),
                         nn.Linear(120, 84), nn.Linear(84, 10))


def test_lenet5_count_matches_torch():
    torch = pytest.importorskip("torch")
    assert applications.lenet5().count_params() == torch_count(torch_lenet5(torch))


class TorchInception:
    """GoogLeNet in torch.nn, from the paper's table: the main path, and the two side heads apart."""

    def __init__(self, torch, classes=1000):
        nn = torch.nn
        self.main = [nn.Conv2d(3, 64, 7), nn.Conv2d(64, 64, 1), nn.Conv2d(64, 192, 3)]
        self.side = []
        channels = 192
        for stage, (f1, r3, f3, r5, f5, fp) in applications.geron.GOOGLENET_INCEPTION_FILTERS.items():
            self.main += [nn.Conv2d(channels, f1, 1), nn.Conv2d(channels, r3, 1), nn.Conv2d(r3, f3, 3),
                          nn.Conv2d(channels, r5, 1), nn.Conv2d(r5, f5, 5), nn.Conv2d(channels, fp, 1)]
            channels = f1 + f3 + f5 + fp
            if stage in ("4a", "4d"):  # side heads: 4x4 after the 5x5/3 average pool at 224x224
                self.side += [nn.Conv2d(channels, 128, 1), nn.Linear(4 * 4 * 128, 1024), nn.Linear(1024, classes)]
        self.main.append(nn.Linear(channels, classes))

    def count(self, auxiliary):
        return sum(p.numel() for m in self.main + (self.side if auxiliary else []) for p in m.parameters())


def test_googlenet_count_matches_torch_with_and_without_side_heads():
    torch = pytest.importorskip("torch")
    oracle = TorchInception(torch)
    assert applications.googlenet().count_params() == oracle.count(auxiliary=False)
    with_heads = applications.googlenet(auxiliary_classifiers=True)
    assert [t.shape for t in with_heads.outputs] == [(None, 1000)] * 3
    assert with_heads.count_params() == oracle.count(auxiliary=True)
    assert with_heads.get_layer("inception_3a_concat").output.shape[1:] == (28, 28, 256)
    assert with_heads.get_layer("inception_5b_concat").output.shape[1:] == (7, 7, 1024)


class TorchUnit:
    """Géron's ResidualUnit in torch.nn (basic or bottleneck, optional SE), for counts and outputs."""

    def __init__(self, torch, cin, filters, strides, bottleneck, squeeze_excite):
        nn = torch.nn
        out = 4 * filters if bottleneck else filters
        if bottleneck:
            self.main = [nn.Conv2d(cin, filters, 1, bias=False), nn.BatchNorm2d(filters, eps=1e-3),
                         self.conv3x3(nn, filters, filters, strides), nn.BatchNorm2d(filters, eps=1e-3),
                         nn.Conv2d(filters, out, 1, bias=False), nn.BatchNorm2d(out, eps=1e-3)]
        else:
            self.main = [self.conv3x3(nn, cin, filters, strides), nn.BatchNorm2d(filters, eps=1e-3),
                         nn.Conv2d(filters, filters, 3, 1, 1, bias=False), nn.BatchNorm2d(filters, eps=1e-3)]
        self.se = [nn.Linear(out, max(1, out // 16)), nn.Linear(max(1, out // 16), out)] if squeeze_excite else []
        projection = strides > 1 or cin != out
        self.skip = [nn.Conv2d(cin, out, 1, strides, bias=False), nn.BatchNorm2d(out, eps=1e-3)] if projection else []
        self.torch = torch

    @staticmethod
    def conv3x3(nn, cin, cout, strides):
        """Keras "same": with stride 2 on an even size the one padding row and column go after."""
        if strides == 1:
            return nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(cin, cout, 3, strides, 0, bias=False))

    def count(self):
        return sum(torch_count(m) for m in self.main + self.se + self.skip)

    def load(self, unit):
        """Copy a built convlab ResidualUnit's weights into these modules."""
        torch = self.torch
        convlab_layers = [m for m in unit.main_layers if isinstance(m, layers.Layer)]
        pairs = list(zip(convlab_layers, self.main)) + list(zip(unit.skip_layers, self.skip))
        pairs += list(zip(unit.excite_layers[1:], self.se))
        with torch.no_grad():
            for ours, theirs in pairs:
                if isinstance(ours, layers.BatchNormalization):
                    for name, weight in zip(("weight", "bias", "running_mean", "running_var"), ours.get_weights()):
                        getattr(theirs, name).copy_(torch.from_numpy(weight))
                elif isinstance(theirs, torch.nn.Linear):  # a 1x1 conv on the pooled 1x1 map
                    kernel, bias = ours.get_weights()
                    theirs.weight.copy_(torch.from_numpy(kernel[0, 0].T.copy()))
                    theirs.bias.copy_(torch.from_numpy(bias))
                else:
                    theirs = theirs[-1] if isinstance(theirs, torch.nn.Sequential) else theirs
                    theirs.weight.copy_(torch.from_numpy(ours.get_weights()[0].transpose(3, 2, 0, 1).copy()))

    def __call__(self, x):
        torch = self.torch
        z = x
        for index, module in enumerate(self.main):
            z = module(z)
            if isinstance(module, torch.nn.BatchNorm2d) and index < len(self.main) - 1:
                z = torch.relu(z)
        if self.se:
            scale = torch.sigmoid(self.se[1](torch.relu(self.se[0](z.mean(dim=(2, 3))))))
            z = z * scale[:, :, None, None]
        skip = x
        for module in self.skip:
            skip = module(skip)
        return torch.relu(z + skip)


@pytest.mark.parametrize("bottleneck, squeeze_excite", [(False, False), (True, False), (False, True), (True, True)])
def test_small_resnets_count_matches_torch_units(bottleneck, squeeze_excite):
    torch = pytest.importorskip("torch")
    filters, units = (4, 8, 16), (2, 1, 2)
    build = applications.geron_resnet50 if bottleneck else applications.resnet34
    model = build(input_shape=(32, 32, 3), classes=5, filters=filters, units=units, squeeze_excite=squeeze_excite)
    expected = torch_count(torch.nn.Conv2d(3, 4, 7, bias=False)) + torch_count(torch.nn.BatchNorm2d(4))
    channels = 4
    for stage, (f, count) in enumerate(zip(filters, units)):
        for unit in range(count):
            oracle = TorchUnit(torch, channels, f, 2 if stage and not unit else 1, bottleneck, squeeze_excite)
            expected += oracle.count()
            channels = 4 * f if bottleneck else f
    expected += channels * 5 + 5
    assert model.count_params() == expected


@pytest.mark.parametrize("bottleneck, squeeze_excite, strides, cin",
                         [(False, False, 1, 6), (False, False, 2, 4), (True, True, 2, 8), (False, True, 1, 32)])
def test_residual_unit_matches_torch_with_the_same_weights(rng, bottleneck, squeeze_excite, strides, cin):
    torch = pytest.importorskip("torch")
    unit = layers.ResidualUnit(8 if not bottleneck else 4, strides=strides, bottleneck=bottleneck,
                               squeeze_excite=squeeze_excite, dtype="float64")
    x = rng.standard_normal((2, 6, 6, cin))
    unit.build(x.shape)
    for layer in unit._sublayers:  # moving statistics other than 0 and 1, so inference BN is tested
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2, variance.shape)])
    oracle = TorchUnit(torch, cin, unit.filters, strides, bottleneck, squeeze_excite)
    for module in oracle.main + oracle.skip + oracle.se:
        module.double().eval()
    oracle.load(unit)
    expected = oracle(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(unit(x).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_residual_unit_gradcheck(rng):
    unit = layers.ResidualUnit(3, strides=2, squeeze_excite=True, se_ratio=2, dtype="float64")
    x = rng.standard_normal((2, 4, 4, 2))
    unit.build(x.shape)
    assert gradcheck(lambda x: unit(x), [x])


def test_inception_module_matches_torch_with_the_same_weights(rng):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    inputs = layers.Input(shape=(5, 5, 3))
    model = convlab.Model(inputs, applications.inception_module(inputs, 2, 3, 4, 1, 2, 3, name="m"))
    assert model.output.shape == (None, 5, 5, 2 + 4 + 2 + 3)
    convs = {name: model.get_layer(f"m_{name}") for name in
             ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_projection")}
    torch_convs = {}
    with torch.no_grad():
        for name, layer in convs.items():
            kernel, bias = layer.get_weights()
            conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0], padding=kernel.shape[0] // 2)
            conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(bias))
            torch_convs[name] = conv
        x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
        t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        relu = torch.relu
        pooled = nn.functional.max_pool2d(t, 3, 1, 1)  # "same" 3x3/1: -inf padding never wins
        branches = [relu(torch_convs["1x1"](t)), relu(torch_convs["3x3"](relu(torch_convs["3x3_reduce"](t)))),
                    relu(torch_convs["5x5"](relu(torch_convs["5x5_reduce"](t)))),
                    relu(torch_convs["pool_projection"](pooled))]
        expected = torch.cat(branches, dim=1).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_squeeze_excite_matches_its_definition(rng):
    inputs = layers.Input(shape=(4, 4, 32))
    model = convlab.Model(inputs, applications.squeeze_excite(inputs, ratio=16, name="se"))
    assert model.count_params() == (32 * 2 + 2) + (2 * 32 + 32)  # dense C/16 and dense C, with biases
    x = rng.standard_normal((2, 4, 4, 32)).astype(np.float32)
    (w1, b1), (w2, b2) = model.get_layer("se_reduce").get_weights(), model.get_layer("se_expand").get_weights()
    squeezed = x.mean(axis=(1, 2))
    excited = 1 / (1 + np.exp(-(np.maximum(squeezed @ w1[0, 0] + b1, 0) @ w2[0, 0] + b2)))
    np.testing.assert_allclose(model(x).numpy(), x * excited[:, None, None, :], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- a few training steps


def colour_batch(size, channels, count=12, seed=0):
    """An easy task any of these nets learns in a few steps: class k lights up channel k (or,
    with one channel, the brightness (k + 1) / 4), under noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.uniform(0, 0.3, size=(count, size, size, channels)).astype(np.float32)
    if channels == 1:
        images += ((labels + 1) / 4)[:, None, None, None].astype(np.float32)
    else:
        images[np.arange(count), :, :, labels] += 0.7
    return images, labels


TINY = {  # name: (builder, Adam learning rate)
    "lenet5": (lambda: applications.lenet5(input_shape=(32, 32, 1), classes=3), 0.003),
    "alexnet": (lambda: applications.alexnet(input_shape=(67, 67, 3), classes=3, width=1 / 16, dropout=0), 0.003),
    "googlenet": (lambda: applications.googlenet(input_shape=(32, 32, 3), classes=3, width=1 / 16), 0.01),
    "resnet34": (lambda: applications.resnet34(input_shape=(32, 32, 3), classes=3, filters=(4, 8), units=(1, 1)),
                 0.003),
    "se_resnet50": (lambda: applications.geron_resnet50(input_shape=(32, 32, 3), classes=3, filters=(4, 8), units=(1, 1),
                                                  squeeze_excite=True), 0.003),
    "xception": (lambda: applications.geron_xception(input_shape=(32, 32, 3), classes=3, width=1 / 32, middle_blocks=1),
                 0.003),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_variant_learns_a_batch(name):
    convlab.utils.set_seed(0)
    build, learning_rate = TINY[name]
    model = build()
    x, y = colour_batch(model.inputs[0].shape[1], model.inputs[0].shape[-1])
    model.compile(optimizer=convlab.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    # training-mode losses (what BN uses in training), each before its step's update
    losses = [float(model.train_on_batch(x, y)) for _ in range(10)]
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


def test_googlenet_side_heads_train_with_weighted_losses():
    """The paper's recipe: the side losses weigh 0.3 each in the total."""
    convlab.utils.set_seed(0)
    model = applications.googlenet(input_shape=(80, 80, 3), classes=3, width=1 / 16, auxiliary_classifiers=True)
    x, y = colour_batch(80, 3, count=6)
    model.compile(optimizer=convlab.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy",
                  loss_weights=[1.0, 0.3, 0.3])
    total, main, aux1, aux2 = model.test_on_batch(x, [y, y, y])
    assert total == pytest.approx(main + 0.3 * aux1 + 0.3 * aux2, rel=1e-5)
