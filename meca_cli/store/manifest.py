"""Step manifests: a step's outputs are complete iff its manifest exists and matches.

A manifest records the step's input fingerprints, its effective parameters and its
outputs' hashes. It is written last and atomically, so a crash never leaves a step marked
complete over partial outputs; a re-run with the same inputs and parameters is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from meca_cli import __version__
from meca_cli.errors import ArtifactError
from meca_cli.store.artifacts import atomic_write_text, sha256_file

MANIFEST_VERSION = "1"
MANIFEST_NAME = "manifest.json"


def fingerprint(obj: object) -> str:
    """A stable hash of JSON-able data: independent of dict ordering."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def read_manifest(directory: Path) -> dict | None:
    """The manifest of a completed step, or None when there is none."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ArtifactError(f"{path}: unreadable manifest", hint="delete it, or re-run the step with --force") from None
    version = data.get("meca_manifest_version") if isinstance(data, dict) else None
    if version != MANIFEST_VERSION:
        raise ArtifactError(
            f"{path}: written by another version of meca (manifest version {version!r}, "
            f"this meca reads {MANIFEST_VERSION!r})",
            hint="re-run the step with --force, or use a new --out directory",
        )
    return data


def _env() -> dict:
    info = {"python": platform.python_version(), "meca": __version__}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


@dataclass
class Step:
    """One pipeline step writing into its own directory.

    `inputs` maps a name to an input fingerprint (a dataset fingerprint or a file hash);
    `params` are the effective parameters. Together they make the step fingerprint.
    """

    name: str
    out: Path
    inputs: dict[str, str]
    params: dict
    summary: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint({"step": self.name, "inputs": self.inputs, "params": self.params,
                            "manifest": MANIFEST_VERSION})

    @property
    def manifest_path(self) -> Path:
        return self.out / MANIFEST_NAME

    def up_to_date(self) -> bool:
        """True when a completed run with the same inputs and params left intact outputs."""
        manifest = read_manifest(self.out)
        if manifest is None or manifest.get("fingerprint") != self.fingerprint:
            return False
        for output in manifest.get("outputs", []):
            path = self.out / output["path"]
            if not path.is_file() or sha256_file(path) != output.get("sha256"):
                return False
        self.summary = manifest.get("summary", {})
        return True

    def begin(self) -> None:
        """Mark the step incomplete before any output is touched."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.manifest_path.unlink(missing_ok=True)

    def complete(self, outputs: list[str], summary: dict | None = None, device: str = "cpu",
                 world_size: int = 1) -> dict:
        """Write the manifest last, atomically, over the outputs already in place."""
        self.summary = summary or {}
        manifest = {
            "meca_manifest_version": MANIFEST_VERSION,
            "step": self.name,
            "meca_version": __version__,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "inputs": self.inputs,
            "params": self.params,
            "fingerprint": self.fingerprint,
            "outputs": [{"path": name, "sha256": sha256_file(self.out / name)} for name in outputs],
            "env": {**_env(), "device": device, "world_size": world_size},
            "summary": self.summary,
        }
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return manifest
