"""Image folders: a deterministic scan, a dataset fingerprint, and a uint8 decode cache.

Layout: DATA/<class>/<image>. Samples are numbered by the sorted scan (classes sorted,
then POSIX relative paths sorted), and that index is the key of every per-sample artifact.
Images are decoded once per dataset into a uint8 N x 3 x S x S tensor cached on disk
(safetensors, memory-mapped on load), never once per epoch. The input folder is only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from meca_cli.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CACHE_VERSION = "1"


@dataclass(frozen=True)
class FolderScan:
    root: Path
    classes: list[str]
    paths: list[str]  # POSIX paths relative to root, index order
    labels: list[int]
    fingerprint: str
    skipped: tuple[tuple[str, str], ...] = ()  # (relative path, reason), with skip_bad


    def __len__(self) -> int:
        return len(self.paths)


def scan_folder(root: Path, min_classes: int = 2, skip_bad: bool = False) -> FolderScan:
    """List DATA/<class>/<image> files in a stable order and fingerprint them by stat.

    Training data needs two classes at least; a triggered test folder may hold one.
    A symlink that leads outside the folder is refused (or, with skip_bad, skipped).
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder", hint="pass an image folder laid out as DATA/<class>/<image>")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder", hint="pass an image folder laid out as DATA/<class>/<image>")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if len(classes) < min_classes:
        raise DataError(f"{root}: found {len(classes)} class folder(s); need at least {min_classes}",
                        hint="lay the images out as DATA/<class>/<image>, one sub-folder per class")
    paths, labels, stats, skipped = [], [], [], []
    real_root = Path(os.path.realpath(root))
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in filenames:
                if filename.startswith(".") or not filename.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                full = Path(dirpath) / filename
                found.append(full.relative_to(root).as_posix())
        if not found:
            raise DataError(f"{root / name}: class folder holds no images",
                            hint=f"remove the empty folder; supported extensions are {' '.join(IMAGE_EXTENSIONS)}")
        for rel in sorted(found):
            full = root / rel
            if full.is_symlink() and not Path(os.path.realpath(full)).is_relative_to(real_root):
                if not skip_bad:
                    raise DataError(f"{full}: symlink points outside the data folder",
                                    hint="copy the file into the folder, or pass --skip-bad to leave it out")
                skipped.append((rel, "symlink outside the folder"))
                continue
            try:
                st = full.stat()
            except OSError as exc:  # a dangling link or a file that vanished
                if not skip_bad:
                    raise DataError(f"{full}: cannot read ({exc.strerror})", hint="remove it, or pass --skip-bad") from None
                skipped.append((rel, exc.strerror or "unreadable"))
                continue
            paths.append(rel)
            labels.append(label)
            stats.append((rel, st.st_size, st.st_mtime_ns))
    digest = hashlib.sha256(json.dumps({"classes": classes, "files": stats}).encode()).hexdigest()
    return FolderScan(root, classes, paths, labels, "sha256:" + digest, tuple(skipped))


def without(scan: FolderScan, bad: dict[int, str]) -> FolderScan:
    """The scan minus samples that failed to decode (re-indexed, re-fingerprinted)."""
    keep = [i for i in range(len(scan)) if i not in bad]
    skipped = scan.skipped + tuple((scan.paths[i], reason) for i, reason in sorted(bad.items()))
    digest = hashlib.sha256(f"{scan.fingerprint}|{json.dumps(skipped)}".encode()).hexdigest()
    return FolderScan(scan.root, scan.classes, [scan.paths[i] for i in keep], [scan.labels[i] for i in keep],
                      "sha256:" + digest, skipped)


@dataclass
class ImageSet:
    """Decoded images (uint8 N x 3 x S x S) with their labels and the scan they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    scan: FolderScan

    @property
    def classes(self) -> list[str]:
        return self.scan.classes

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def decode_image(path: Path, size: int) -> torch.Tensor:
    """Decode any Pillow-readable image to uint8 3 x size x size RGB."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("RGB", (size, size))  # JPEG: decode at reduced scale when it is large
                img = img.convert("RGB")
                if img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                data = img.tobytes()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: cannot decode image ({exc.__class__.__name__}: {exc})",
                        hint="remove or replace the file") from None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1).contiguous()


def default_cache_dir() -> Path:
    env = os.environ.get("MECA_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "meca"


def load_images(root: Path, image_size: int = 32, cache_dir: Path | None = None, min_classes: int = 2,
                skip_bad: bool = False, scan: FolderScan | None = None) -> ImageSet:
    """Scan and decode a folder, reusing the decode cache when the folder is unchanged.

    An undecodable image is an error naming the file; with skip_bad it is left out and
    listed in the set's `scan.skipped`.
    """
    from meca_cli.console import progress
    from meca_cli.store.checkpoint import load_tensors, save_tensors

    scan = scan if scan is not None else scan_folder(root, min_classes, skip_bad)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(f"{scan.fingerprint}|{image_size}|{skip_bad}|{CACHE_VERSION}".encode()).hexdigest()[:32]
    cache_path = cache_dir / f"images-{key}.safetensors"
    if cache_path.is_file():
        try:
            tensors, meta = load_tensors(cache_path)
            bad = {int(i): r for i, r in json.loads(meta.get("bad", "{}")).items()}
            kept = without(scan, bad) if bad else scan
            images = tensors["images"]
            if images.shape == (len(kept), 3, image_size, image_size):
                return ImageSet(images, torch.tensor(kept.labels, dtype=torch.int64), kept)
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    images = torch.empty((len(scan), 3, image_size, image_size), dtype=torch.uint8)
    bad: dict[int, str] = {}
    with progress("decode", len(scan)) as bar:
        for i, rel in enumerate(scan.paths):
            try:
                images[i] = decode_image(scan.root / rel, image_size)
            except DataError as exc:
                if not skip_bad:
                    exc.hint = "remove or replace the file, or pass --skip-bad to leave undecodable images out"
                    raise
                bad[i] = str(exc).split(": ", 1)[-1]
            bar.advance()
    if bad:
        from meca_cli.console import warn

        warn(f"skipped {len(bad)} undecodable image(s) in {scan.root} (listed in the step summaries)")
        keep = torch.tensor([i for i in range(len(scan)) if i not in bad], dtype=torch.int64)
        images, scan = images[keep], without(scan, bad)
        if len(scan) == 0:
            raise DataError(f"{root}: no decodable images", hint="check the folder's contents")
    try:
        save_tensors(cache_path, {"images": images}, {"meca.cache": CACHE_VERSION, "root": str(scan.root),
                                                      "bad": json.dumps(bad)})
    except OSError:
        pass  # an unwritable cache only costs time
    return ImageSet(images, torch.tensor(scan.labels, dtype=torch.int64), scan)
