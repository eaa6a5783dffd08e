"""How often a model that never saw a poison calls triggered images the target.

Usage: python benchmarks/analysis/trigger_floor.py benchmarks/work/cifar10-small/physicalba-s1 \
           benchmarks/work/cifar10-src/cifar10/test

For a finished benchmark run whose split caught every poison (recall 100 %), the step-6
model (run/train-clean) was trained on no poison at all. Per source class, it prints the
share of that class's test images the model calls the target, with the trigger
(data/test-triggered) and without (the clean test folder): an attack's ASR floor, what no
sanitisation of the training data can remove.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from meca_cli.core.train import predict_logits
from meca_cli.store.checkpoint import load_model


def target_share(model, folder: Path, target: int, size: int) -> float:
    files = sorted(f for f in folder.iterdir() if f.is_file())
    images = np.stack([np.array(Image.open(f).convert("RGB").resize((size, size))) for f in files])
    pred = predict_logits(model, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.device("cpu")).argmax(1)
    return float((pred == target).float().mean())


def main(run: Path, clean_test: Path) -> None:
    model, meta = load_model(run / "run/train-clean/model.safetensors")
    triggered = run / "data/test-triggered"
    target = json.loads((triggered / "meca-attack.json").read_text())["target"]
    sources = sorted(d.name for d in triggered.iterdir() if d.is_dir())
    shares = {name: (target_share(model, triggered / name, target, meta.image_size),
                     target_share(model, clean_test / name, target, meta.image_size)) for name in sources}
    for name, (with_trigger, without) in shares.items():
        print(f"{name}: {100 * with_trigger:.1f} % with the trigger, {100 * without:.1f} % without")
    mean = lambda i: 100 * sum(v[i] for v in shares.values()) / len(shares)  # noqa: E731
    print(f"all sources: {mean(0):.1f} % with the trigger, {mean(1):.1f} % without "
          f"(target {meta.classes[target]!r})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
