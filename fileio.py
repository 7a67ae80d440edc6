"""Atomic file output: write beside the target, rename when whole, never leave a partial file.

Downloads of published weights go through the same path: a broken transfer leaves nothing behind.
"""
import os
import sys
import tempfile
import urllib.request
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


def download(url, path):
    """Fetch `url` to `path` through a temporary file, so a broken transfer leaves nothing behind."""
    with atomic_output(path, suffix=os.path.splitext(os.fspath(path))[1]) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)


def fetch_if_missing(path, url, what, fetch=None):
    """`path`, first downloaded from `url` when missing; a one-line UserError naming both if that fails."""
    from cli import UserError
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    print(f"{what} not found at {path}; downloading {url}", file=sys.stderr)
    try:
        (fetch or download)(url, path)
    except OSError as e:  # URLError, timeouts and refused connections are OSErrors
        raise UserError(f"{path}: {what} not found and the download from {url} failed ({e}); "
                        f"download {os.path.basename(path)} yourself and put it at {path}") from None
    return path
