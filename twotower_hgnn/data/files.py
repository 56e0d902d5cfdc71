"""Reading a table file into a frame: paths, compression, encodings (used by :mod:`twotower_hgnn.data.readers`).

What a user's file may be, and what happens:

* a path that does not exist, a directory, a pipe or device, or a file that cannot be opened -> :class:`InputPathError`
  (an :class:`~twotower_hgnn.errors.PathError` that is also a :class:`DataError`) naming the path;
* ``.parquet`` / ``.pq`` -> read with pyarrow (native dtypes); an unreadable one is a :class:`DataError`;
* ``.csv`` / ``.tsv`` (a ``.csv`` whose header line has tabs and no commas is read as TSV; optionally ``.gz``; gzip is also recognised by its magic bytes whatever the
  suffix) -> every cell read as a string. A UTF-8 byte-order mark and CRLF line endings are accepted
  and give the same table as clean input. Text is decoded strictly with ``encoding`` (default
  ``"utf-8"``): an undecodable byte or a NUL byte (binary data) is a :class:`DataError` naming the file,
  the byte offset (in the decompressed text for gzip) and the line.

Every message is one line.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import stat
import zlib
from pathlib import Path

import pandas as pd

from twotower_hgnn import errors
from twotower_hgnn.data.readers_checks import DataError

_BOM = codecs.BOM_UTF8
_GZIP_MAGIC = b"\x1f\x8b"
CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


class InputPathError(errors.PathError, DataError):
    """An input path that cannot be read (missing, a directory, no permission); names the path."""


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def check_readable(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is a readable regular file, else :class:`InputPathError` naming it."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputPathError(f"{p}: file not found") from None
    except OSError as e:
        raise InputPathError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
    if p.is_dir():
        raise InputPathError(f"{p}: is a directory, not a file (give the path of a .csv, .tsv or .parquet file)")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or stream forever
        raise InputPathError(f"{p}: not a regular file (a pipe, socket or device cannot be read as a table)")
    if not os.access(p, os.R_OK):
        raise InputPathError(f"{p}: cannot be read (permission denied)")
    if st.st_size == 0:
        raise DataError(f"{p}: empty file (no header, no rows)")
    return p


def _raw_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except PermissionError:
        raise InputPathError(f"{p}: cannot be read (permission denied)") from None
    except OSError as e:
        raise InputPathError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None


def _decompressed(p: Path, data: bytes) -> tuple[bytes, bool]:
    """(the bytes, gunzipped if they are gzip, whatever the suffix; whether they were)."""
    if not data.startswith(_GZIP_MAGIC):
        if p.suffix.lower() == ".gz":
            raise DataError(f"{p}: not a gzip file (no gzip header) although it ends in .gz")
        return data, False
    try:
        return gzip.decompress(data), True
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{p}: not a readable gzip file ({one_line(e)}); truncated or corrupt?") from None


def decode_text(p: Path, data: bytes, encoding: str = "utf-8", gz: bool = False) -> str:
    """The text of a CSV file's bytes: BOM dropped, decoded strictly; a bad byte names its offset and line."""
    where = "of the decompressed text " if gz else ""
    skip = len(_BOM) if data.startswith(_BOM) and encoding.replace("-", "").lower() in ("utf8", "utf8sig") else 0
    nul = data.find(b"\x00", skip)
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DataError(
            f"{p}: byte offset {nul} {where}(line {line}): NUL byte: binary data, not a text CSV "
            "(is it a Parquet or spreadsheet file with the wrong suffix?)"
        )
    try:
        return data[skip:].decode(encoding)
    except LookupError:
        raise errors.ConfigError(f"encoding {encoding!r}: not a known text encoding") from None
    except UnicodeDecodeError as e:
        off = e.start + skip
        line = data.count(b"\n", 0, off) + 1
        raise DataError(
            f"{p}: byte offset {off} {where}(line {line}): byte 0x{data[off]:02x} is not valid {encoding}; "
            "re-save the file as UTF-8 or pass its encoding (encoding=..., e.g. latin-1)"
        ) from None


def _read_csv_text(p: Path, text: str, sep: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: empty file (no header, no rows)") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{p}: malformed CSV ({one_line(e)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def sniff_delimiter(text: str) -> str:
    """A tab when the header line has tabs and no commas (a TSV named ``.csv``), else a comma."""
    header = text.split("\n", 1)[0]
    return "\t" if "\t" in header and "," not in header else ","


def read_table(path: str | os.PathLike, encoding: str = "utf-8") -> tuple[pd.DataFrame, bool]:
    """Reads CSV/TSV (all cells as strings) or Parquet (native dtypes). Returns (frame, is_csv)."""
    p = check_readable(path)
    name = p.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        try:
            df = pd.read_parquet(p)
        except PermissionError:
            raise InputPathError(f"{p}: cannot be read (permission denied)") from None
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{p}: not a readable Parquet file ({type(e).__name__}: {one_line(e)})") from None
        is_csv = False
    elif name.endswith(CSV_SUFFIXES):
        data, gz = _decompressed(p, _raw_bytes(p))
        if not data.strip(b" \t\r\n" + _BOM):
            raise DataError(f"{p}: empty file (no header, no rows)")
        text = decode_text(p, data, encoding, gz)
        df = _read_csv_text(p, text, "\t" if ".tsv" in name else sniff_delimiter(text))
        is_csv = True
    else:
        raise DataError(f"{p}: unsupported file type {p.suffix!r} (use .csv, .tsv, .csv.gz or .parquet)")
    if len(df) == 0:
        raise DataError(f"{p}: empty file (header but no rows)")
    return df, is_csv
