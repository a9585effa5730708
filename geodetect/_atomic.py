"""Atomic output files: write under a temporary name beside the target, then rename into place.

A failed or interrupted write never leaves a truncated file where a good one was.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from geodetect.errors import GeodetectError, OutputError

__all__ = ["atomic_output"]


@contextmanager
def atomic_output(path, *, what: str = "the file", keep_temp: bool = True):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    ``keep_temp=False`` deletes the empty temporary first, for writers (GDAL
    drivers) that insist on creating the file themselves. The file gets the
    permissions a plain ``open(path, "w")`` would give. OS errors become an
    :class:`OutputError` naming ``path``.
    """
    path = Path(os.fspath(path))
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {parent} ({exc.strerror or exc})") from None
    if not keep_temp:
        os.unlink(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, GeodetectError):
            raise OutputError(f"{path}: could not write {what} ({exc.strerror or exc})") from None
        raise
