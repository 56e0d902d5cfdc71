"""Atomic file writes: a reader sees either the old file or the complete new one, never a half.

Every writer puts its bytes into a temporary file in the *same directory* as the target (so the
final ``os.replace`` is a same-filesystem rename, which POSIX makes atomic), fsyncs it, renames it
onto the target and fsyncs the directory so the rename itself survives a crash. On any exception
the temporary is removed and the target is left untouched.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

PathLike = str | os.PathLike


def _fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it (``/proc``), else by the set-and-restore idiom."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Calls ``write(fileobj)`` on a same-directory temporary, then renames it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically; returns the path."""
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_stream(path: PathLike, write: Callable[[Any], None]) -> Path:
    """Calls ``write(binary file object)`` (e.g. a streaming Parquet writer) on a same-directory temporary
    that is renamed onto ``path`` once ``write`` returns; returns the path."""
    return _atomic_write(path, write)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Writes ``text`` to ``path`` atomically; returns the path."""
    return _atomic_write(path, lambda f: f.write(text.encode(encoding)))


def _json_default(obj: Any) -> Any:
    # NumPy scalars/arrays and paths appear in configs and metrics; make them plain JSON.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable: {obj!r:.80}")


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Serialises ``obj`` first (so a TypeError leaves no file at all), then writes it atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=_json_default, allow_nan=True)
    return atomic_write_text(path, text + "\n")


def atomic_save_npy(path: PathLike, array: np.ndarray) -> Path:
    """``np.save`` to ``path`` atomically (``path`` is used as given: no ``.npy`` is appended)."""
    array = np.asarray(array)
    return _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def atomic_write_parquet(df: Any, path: PathLike, **to_parquet_kwargs: Any) -> Path:
    """Writes a pandas DataFrame to Parquet atomically (pyarrow engine unless overridden)."""
    to_parquet_kwargs.setdefault("engine", "pyarrow")
    buf = io.BytesIO()
    df.to_parquet(buf, **to_parquet_kwargs)
    return atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yields a temporary directory next to ``path``; on success it replaces ``path`` whole.

    An existing ``path`` is moved aside first and deleted only after the new directory is in
    place. Readers never see a partly written directory; a crash between the two renames (a
    microsecond window) leaves the old directory intact under a ``.<name>.*.old`` sibling instead
    of at ``path``. On an exception in the body the temporary directory is removed and ``path``
    is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.rmdir(old)
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
