"""Atomic writes and the small text formats steps exchange (index lists, CSV tables)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from meca_cli.errors import ArtifactError

# Cells a spreadsheet would treat as a formula; file names can start with these.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _finite(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj: object) -> str:
    """Indented JSON that strict parsers (jq, JavaScript) accept: a non-finite float, such
    as the recall of a folder with no poison to find, is written as null, not NaN."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n"


def write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json_text(obj))


def read_json(path: Path, default: object = None, hint: str = "re-create it with the meca command that wrote it"):
    """A JSON artifact; `default` when the file is absent (if given), a one-line error when
    it cannot be read or parsed."""
    path = Path(path)
    if default is not None and not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable JSON ({exc.__class__.__name__})", hint=hint) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


# ---- index lists: one integer per line, sorted, newline-terminated ------------------------


def format_index_list(indices: Iterable[int]) -> str:
    return "".join(f"{i}\n" for i in sorted(set(int(i) for i in indices)))


def write_index_list(path: Path, indices: Iterable[int]) -> None:
    atomic_write_text(path, format_index_list(indices))


def read_index_list(source: Path | str, limit: int | None = None) -> list[int]:
    """Read an index list from a file, or from stdin when `source` is '-'."""
    if str(source) == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        path = Path(source)
        if not path.is_file():
            raise ArtifactError(f"{path}: index list not found", hint="pass a .idx file written by a meca step")
        text, name = path.read_text(encoding="utf-8"), str(path)
    indices = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            value = int(line)
        except ValueError:
            raise ArtifactError(f"{name}:{lineno}: not an integer index: {line[:40]!r}",
                                hint="an index list holds one sample index per line") from None
        if value < 0 or (limit is not None and value >= limit):
            raise ArtifactError(f"{name}:{lineno}: index {value} is out of range for {limit} samples",
                                hint="was this list made for another folder?")
        indices.append(value)
    return sorted(set(indices))


# ---- CSV tables ------------------------------------------------------------------------------


def safe_cell(value: object) -> object:
    """Neutralise spreadsheet formula injection in text cells (names come from untrusted files).

    A bare carriage return is written as the two characters \\r: csv with "\\n" line ends
    would not quote it, and a reader would drop it.
    """
    if not isinstance(value, str):
        return value
    value = value.replace("\r", "\\r")
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def format_float(value: float) -> str:
    return f"{value:.6g}"


def format_csv(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_float(v) if isinstance(v, float) else safe_cell(v) for v in row])
    return buffer.getvalue()


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    atomic_write_text(path, format_csv(columns, rows))


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Read a CSV with a header, checking the columns a step relies on."""
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found", hint="run the step that writes it first")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ArtifactError(f"{path}: missing column(s) {', '.join(missing)}",
                                hint="the file was not written by this version of meca, or was edited")
        return list(reader)


def parse_int(row: dict[str, str], column: str, path: Path, lineno: int) -> int:
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise ArtifactError(f"{path}:{lineno}: column {column!r} is not an integer: {row[column]!r}",
                            hint="regenerate the file with the step that writes it") from None


def parse_float(row: dict[str, str], column: str, path: Path, lineno: int) -> float:
    try:
        return float(row[column])
    except (TypeError, ValueError):
        raise ArtifactError(f"{path}:{lineno}: column {column!r} is not a number: {row[column]!r}",
                            hint="regenerate the file with the step that writes it") from None
