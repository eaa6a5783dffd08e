"""Checkpoints: safetensors only, with string metadata that describes the model.

Pickle-based formats (.pt/.pth/.ckpt/.bin) are refused: a checkpoint from an untrusted
source must never be able to run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from meca_cli.errors import ArtifactError
from meca_cli.store.artifacts import atomic_path

FORMAT = "meca-checkpoint-1"

from meca_cli.core.models import MEAN, STD  # noqa: E402  (torch is imported above anyway)


@dataclass
class ModelMeta:
    arch: str
    classes: list[str]
    image_size: int
    step: str = ""
    config: dict | None = None

    def to_strings(self) -> dict[str, str]:
        # safetensors metadata must be str -> str.
        return {
            "meca.format": FORMAT,
            "meca.arch": self.arch,
            "meca.classes": json.dumps(self.classes),
            "meca.image_size": str(self.image_size),
            "meca.step": self.step,
            # Inputs are images in [0, 1]; the model's first layer normalises with these.
            "meca.normalize": json.dumps({"mean": list(MEAN), "std": list(STD)}),
            "meca.config": json.dumps(self.config or {}, sort_keys=True),
        }

    @classmethod
    def from_strings(cls, meta: dict[str, str], path: Path) -> "ModelMeta":
        if meta.get("meca.format") != FORMAT:
            raise ArtifactError(f"{path}: not a meca checkpoint (format {meta.get('meca.format')!r})",
                                hint="pass a model.safetensors written by 'meca train'")
        try:
            return cls(arch=meta["meca.arch"], classes=json.loads(meta["meca.classes"]),
                       image_size=int(meta["meca.image_size"]), step=meta.get("meca.step", ""),
                       config=json.loads(meta.get("meca.config", "{}")))
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: malformed checkpoint metadata ({exc})") from None


def _check_path(path: Path) -> None:
    if path.suffix != ".safetensors":
        raise ArtifactError(f"{path}: only .safetensors checkpoints are read (pickle files can run code)",
                            hint="convert it with safetensors, or pass a model.safetensors written by meca")
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found", hint="run 'meca train' first, or check the path")


def canonical_safetensors(blob: bytes) -> bytes:
    """The same file with its JSON header key-sorted. safetensors writes the metadata map in
    hash order, so equal weights gave different bytes and hashes from run to run; manifests
    compare hashes, so a checkpoint's bytes must depend on its content only."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)  # keep the data section 8-byte aligned, as the format pads
    return len(text).to_bytes(8, "little") + text + blob[8 + size:]


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        tmp.write_bytes(canonical_safetensors(save(tensors, metadata=metadata)))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    _check_path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable safetensors file ({exc})",
                            hint="the file is truncated or not a checkpoint; re-run the step with --force") from None


def save_model(path: Path, model: torch.nn.Module, meta: ModelMeta) -> None:
    from meca_cli.core.models import unwrap

    save_tensors(path, unwrap(model).state_dict(), meta.to_strings())


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, ModelMeta]:
    from meca_cli.core.models import build_model

    tensors, strings = load_tensors(path)
    meta = ModelMeta.from_strings(strings, path)
    model = build_model(meta.arch, len(meta.classes), meta.image_size)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ArtifactError(f"{path}: weights do not fit architecture {meta.arch!r} ({first})") from None
    return model.to(device), meta


def check_fits(meta: ModelMeta, dataset, source: Path | str, classes: bool = True) -> None:
    """Refuse a checkpoint (`source`) on a folder it was not trained for: other classes
    (unless `classes` is False: a triggered folder holds a subset) or another image size.
    The model would run, and its figures would mean nothing."""
    if classes and meta.classes != dataset.classes:
        raise ArtifactError(f"{source}: checkpoint classes {meta.classes} do not match the folder's {dataset.classes}",
                            hint="use the checkpoint trained on a folder with these class sub-folders")
    if meta.image_size != dataset.image_size:
        raise ArtifactError(f"{source}: checkpoint was trained at image size {meta.image_size}, "
                            f"the data is read at {dataset.image_size}", hint=f"pass --image-size {meta.image_size}")
