"""Writing a file so that a reader sees either the old one or the whole new one.

Every file convlab writes (model archives, weights, images, PNGs, a job's results) goes
through `atomic_write`: the bytes go to a temporary file in the same directory, which is
flushed to disk and then renamed over the target. A crash or an exception part way leaves
the target as it was and no temporary file behind.
"""

import contextlib
import os
import tempfile


def _file_mode(path):
    """The existing file's permissions, or those a new file gets under the current umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path, what="write"):
    """Open a binary file that replaces `path` when the block ends without an exception.

    what: names the caller in the errors, which name `path` (never the temporary file): a
    missing directory, a path that is a directory, a directory without write permission.
    The new file keeps the mode of the file it replaces, or gets the one a plain open()
    would give under the umask (mkstemp alone would make it private).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what}: cannot write {path!r}: the directory {directory!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: cannot write {path!r}: it is a directory; give a file path "
                                f"inside it or beside it")
    try:
        handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except PermissionError:
        raise PermissionError(f"{what}: cannot write {path!r}: no permission to create files in the directory "
                              f"{directory!r}") from None
    except OSError as error:
        raise OSError(error.errno, f"{what}: cannot write {path!r}: cannot create a file in the directory "
                                   f"{directory!r}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
