"""convlab.torch_checkpoint: PyTorch state dicts read without torch and without running code.

Each reading is compared with torch.load(path, weights_only=True) (PyTorch's own restricted
loader) on files torch wrote, in both of torch.save's formats; each refusal is a file crafted
to run code, and the proof that none ran is a marker file that does not appear.
"""

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from convlab import kernels
from convlab.torch_checkpoint import CheckpointError, load, load_state_dict, to_keras_layout


def _lite0_weights_path():
    from pretrained_weights import REASON, installed

    if not installed():
        pytest.skip(REASON)
    from convlab.applications import efficientnet

    return efficientnet.imagenet_weights_path()


# --------------------------------------------------------------------------- refusing code

class _RunsCode:
    """Pickles as a call of `function(argument)`: what a malicious checkpoint holds."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def _zip_checkpoint(path, payload):
    """A zip checkpoint laid out as torch.save lays it out, with `payload` as its data.pkl."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


def _legacy_checkpoint(path, payload):
    """A legacy (pre-zip) checkpoint: magic number, protocol, system info, then `payload`."""
    header = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                            "type_sizes": {"short": 2, "int": 4, "long": 4}}]
    with open(path, "wb") as f:
        for value in header:
            pickle.dump(value, f, protocol=2)
        f.write(payload)
        pickle.dump([], f, protocol=2)


def _malicious_payloads(marker):
    command = f"touch {marker}"
    return {
        "os.system": pickle.dumps({"weight": _RunsCode(os.system, command)}, protocol=2),
        "builtins.exec": pickle.dumps(_RunsCode(exec, f"open({str(marker)!r}, 'w').close()"), protocol=2),
        # a code-running global in a tensor's place inside an OrderedDict, with protocol 4's STACK_GLOBAL
        "nested, protocol 4": pickle.dumps(collections.OrderedDict(a=[1, _RunsCode(os.system, command)]),
                                           protocol=4),
    }


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("case", ["os.system", "builtins.exec", "nested, protocol 4"])
def test_a_checkpoint_whose_pickle_calls_code_is_refused_and_nothing_runs(tmp_path, layout, case):
    marker = tmp_path / "marker"
    payload = _malicious_payloads(marker)[case]
    # the crafted pickle does run code when unpickled the ordinary way: the test's own control
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "evil.pth"
    (_zip_checkpoint if layout == "zip" else _legacy_checkpoint)(path, payload)
    # the global as the pickle names it (protocol 2 writes Python 2's name for builtins)
    with pytest.raises(CheckpointError, match=r"refusing to load the global '((posix|os|nt)\.system|"
                                              r"(__builtin__|builtins)\.exec)'") as error:
        load(path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_a_file_that_is_no_checkpoint_is_refused_with_its_name(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(pickle.dumps("hello", protocol=2))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint.*magic number"):
        load(path)
    with pytest.raises(CheckpointError, match="cannot read the checkpoint .*missing.pth"):
        load(tmp_path / "missing.pth")


# --------------------------------------------------------------------------- against torch.load

def _state_dict_with_every_layout(torch):
    """A state dict whose tensors exercise what the reader must get right."""
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))  # has _metadata, int64 counter
    state = model.state_dict()
    state.update({
        "slice": base[1:5, 2:9:3],                  # offset and strides into a larger storage
        "transposed": base.t(),                     # non-contiguous
        "shares_storage_with_slice": base[2],       # a second view of the same storage
        "float64": torch.linspace(-1, 1, 7, dtype=torch.float64),
        "float16": torch.tensor([0.5, -2.25, 65504.0], dtype=torch.float16),
        "bfloat16": torch.tensor([1.5, -3.0, 1e30], dtype=torch.bfloat16),
        "int64 scalar": torch.tensor(7, dtype=torch.int64),
        "int32": torch.tensor([[1, -2], [3, 4]], dtype=torch.int32),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
    })
    return state


def _assert_equal_to_torch(ours, reference):
    assert list(ours) == list(reference)
    for name, tensor in reference.items():
        expected = (tensor.float() if tensor.dtype == tensor.new_empty(0).bfloat16().dtype else tensor).numpy()
        got = ours[name]
        assert isinstance(got, np.ndarray) and got.flags.c_contiguous, name
        assert got.dtype == expected.dtype and got.shape == expected.shape, (name, got.dtype, got.shape)
        np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_state_dict_saved_by_torch_reads_as_torch_load_reads_it(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    path = tmp_path / "state.pt"
    torch.save(_state_dict_with_every_layout(torch), path, _use_new_zipfile_serialization=zip_format)
    _assert_equal_to_torch(load_state_dict(path), torch.load(path, weights_only=True))


def test_the_efficientnet_lite0_file_reads_as_torch_load_reads_it():
    torch = pytest.importorskip("torch")
    path = _lite0_weights_path()
    ours = load_state_dict(path)
    _assert_equal_to_torch(ours, torch.load(path, weights_only=True))
    # the numbers the package's description gives: 296 entries, 4,652,008 parameters without BN statistics
    assert len(ours) == 296
    assert sum(a.size for k, a in ours.items() if not k.endswith(("running_mean", "running_var",
                                                                   "num_batches_tracked"))) == 4_652_008


def test_containers_numbers_and_strings_come_back_as_saved(tmp_path):
    torch = pytest.importorskip("torch")
    checkpoint = {"epoch": 3, "name": "run", "lr": 0.1, "none": None, "pair": (1, 2),
                  "model": {"w": torch.ones(2)}, "history": [torch.zeros(1), 4]}
    path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint, path)
    ours, reference = load(path), torch.load(path, weights_only=True)
    assert {k: v for k, v in ours.items() if k not in ("model", "history")} == \
        {k: v for k, v in reference.items() if k not in ("model", "history")}
    np.testing.assert_array_equal(ours["model"]["w"], reference["model"]["w"].numpy())
    np.testing.assert_array_equal(ours["history"][0], reference["history"][0].numpy())
    assert ours["history"][1] == 4
    with pytest.raises(CheckpointError, match="entry 'epoch' is a int, a state dict maps names to tensors"):
        load_state_dict(path)


# --------------------------------------------------------------------------- damaged files

def _patched_zip(source, destination, member_suffix, patch):
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(destination, "w") as patched:
        for name in original.namelist():
            data = original.read(name)
            patched.writestr(name, patch(data) if name.endswith(member_suffix) else data)


def test_a_tensor_that_reads_past_its_storage_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    source = tmp_path / "ok.pt"
    torch.save({"w": torch.zeros(4, 6)}, source)

    truncated = tmp_path / "truncated.pt"
    _patched_zip(source, truncated, "data/0", lambda data: data[:40])
    with pytest.raises(CheckpointError, match=r"data/0 has 40 bytes, storage '0' needs 24 x 4"):
        load(truncated)

    # the storage declares 10 elements (BININT1 10 in place of 24): the (4, 6) view would read element 23
    shrunk = tmp_path / "shrunk.pt"
    _patched_zip(source, shrunk, "data.pkl", lambda data: data.replace(b"K\x18t", b"K\nt", 1))
    with pytest.raises(CheckpointError, match=r"reads element 23 of storage '0', which has 10"):
        load(shrunk)


# --------------------------------------------------------------------------- layouts

def test_conv2d_weight_in_keras_layout_computes_what_torch_computes(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 9, 8, 3))
    weight = rng.standard_normal((5, 3, 3, 2))  # (out, in, kh, kw), a non-square kernel
    ours = kernels.conv2d_forward(x, to_keras_layout(weight, "conv2d"))
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(weight))
    np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("depth_multiplier", [1, 2])
def test_depthwise_weight_in_keras_layout_computes_what_torch_computes(rng, depth_multiplier):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 7, 7, 4))
    weight = rng.standard_normal((4 * depth_multiplier, 1, 3, 5))  # PyTorch: groups=in channels
    ours = kernels.depthwise_conv2d_forward(x, to_keras_layout(weight, "depthwise_conv2d", depth_multiplier))
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(weight), groups=4)
    np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), rtol=1e-12, atol=1e-12)


def test_dense_weight_in_keras_layout_computes_what_torch_computes(rng):
    torch = pytest.importorskip("torch")
    x, weight = rng.standard_normal((3, 6)), rng.standard_normal((4, 6))  # Linear: (out, in)
    theirs = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(weight)).numpy()
    np.testing.assert_allclose(x @ to_keras_layout(weight, "dense"), theirs, rtol=1e-12, atol=1e-12)


def test_layout_errors_name_the_kind_and_the_shape():
    with pytest.raises(ValueError, match=r"a conv2d weight has shape \(out, in, kh, kw\), got shape \(3, 3\)"):
        to_keras_layout(np.zeros((3, 3)), "conv2d")
    with pytest.raises(ValueError,
                       match=r"depth_multiplier 2 has shape \(in \* 2, 1, kh, kw\), got shape \(3, 1, 3, 3\)"):
        to_keras_layout(np.zeros((3, 1, 3, 3)), "depthwise_conv2d", depth_multiplier=2)
    with pytest.raises(ValueError, match="kind must be one of conv2d, depthwise_conv2d, dense, got 'linear'"):
        to_keras_layout(np.zeros((3, 3)), "linear")
