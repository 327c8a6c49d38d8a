"""convlab._atomic.atomic_write: the one way convlab replaces a file."""

import os

import pytest

from convlab._atomic import atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(path) as file:
            file.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["results.json"]


def test_a_finished_write_replaces_the_file_and_keeps_its_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        path = tmp_path / "new.bin"
        with atomic_write(path) as file:
            file.write(b"first")
        assert path.read_bytes() == b"first" and os.stat(path).st_mode & 0o777 == 0o644
        os.chmod(path, 0o600)
        with atomic_write(str(path)) as file:
            file.write(b"second")
        assert path.read_bytes() == b"second" and os.stat(path).st_mode & 0o777 == 0o600
        assert os.listdir(tmp_path) == ["new.bin"]
    finally:
        os.umask(umask)


def test_a_missing_directory_is_named_in_the_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"save: cannot write .*the directory .*nowhere.* does not exist"):
        with atomic_write(missing / "model.keras", "save"):
            pass
    assert not missing.exists()
