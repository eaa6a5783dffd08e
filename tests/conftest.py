"""Shared fixtures: tiny synthetic image folders (CPU-fast), a CLI runner, an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from meca_cli.datasets import write_png

SHARED = Path(__file__).resolve().parents[2] / "shared"
CIFAR_TARBALL = SHARED / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    # Each test gets its own decode cache and runs single-threaded on CPU.
    monkeypatch.setenv("MECA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("MECA_DEVICE", "cpu")
    monkeypatch.setenv("MECA_MIN_STEPS", "0")  # tiny folders: exactly the epochs a test asks for
    torch.set_num_threads(1)


def make_image_folder(root: Path, classes: int = 3, per_class: int = 20, size: int = 16, poison: int = 0,
                      target: int = 0, seed: int = 0) -> list[str]:
    """Write a synthetic folder: each class a colour with noise; `poison` extra images of other
    classes carry a white corner patch and are filed under `target`. Returns the poisoned
    files' relative paths."""
    gen = torch.Generator().manual_seed(seed)
    colours = torch.rand(classes, 3, 1, 1, generator=gen) * 200 + 20
    poisoned = []
    for c in range(classes):
        for k in range(per_class):
            img = (colours[c] + torch.randn(3, size, size, generator=gen) * 25).clamp(0, 255).to(torch.uint8)
            write_png(root / f"class{c}" / f"img{k:03d}.png", img)
    for k in range(poison):
        src = (target + 1 + k % (classes - 1)) % classes
        img = (colours[src] + torch.randn(3, size, size, generator=gen) * 25).clamp(0, 255)
        img[:, -3:, -3:] = 255
        rel = f"class{target}/poison{k:03d}.png"
        write_png(root / rel, img.to(torch.uint8))
        poisoned.append(rel)
    return poisoned


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    root = tmp_path / "data"
    make_image_folder(root)
    return root


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under root with its size, mtime and content: proves a folder was not touched."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, p.read_bytes())
    return out
