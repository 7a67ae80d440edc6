"""Atomic file output: write beside the target, rename when whole, never leave a partial file."""
import os
import tempfile
from contextlib import contextmanager


def temp_path_beside(path, suffix=""):
    """A new empty hidden file in `path`'s folder (same file system, so the final rename is atomic)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    return tmp


def publish(tmp, path):
    """Move a finished temporary file to `path`, with the permissions a plain open() would give."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates files readable by their owner only
    os.replace(tmp, path)


@contextmanager
def atomic_output(path, suffix=""):
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed.

        with atomic_output("out/model.pth", suffix=".pth") as tmp:
            torch.save(obj, tmp)
    """
    tmp = temp_path_beside(path, suffix)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
