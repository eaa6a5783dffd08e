"""Peak memory of the pipeline's scoring, enhancement and prediction loops, in process.

Usage: python benchmarks/analysis/memory_probe.py FOLDER N

Opens FOLDER (e.g. a `meca bench --perf` folder), keeps its first N images, then twice
scores them, runs one enhancement round and predicts them, printing the process's
current (VmRSS) and peak (VmHWM) resident memory in MiB after each. "peak - loaded" is
what the loops add on top of the runtime and the data set; it should not grow with N.
"""

import sys
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.config import EnhanceConfig, ScoreConfig
from meca_cli.core.enhance import enhance_round
from meca_cli.core.models import build_model
from meca_cli.core.scoring import kl_scores
from meca_cli.core.train import predict_logits


def memory() -> dict:
    found = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            found[key] = int(value.split()[0]) // 1024
    return found


if __name__ == "__main__":
    torch.set_num_threads(1)
    folder, n = Path(sys.argv[1]), int(sys.argv[2])
    data = steps.open_data(folder, steps.Common(device="cpu"))
    images, labels = data.images[:n].clone(), data.labels[:n].clone()
    loaded = memory()
    print("loaded", loaded, flush=True)
    device = torch.device("cpu")
    model = build_model("smallcnn", len(data.classes), data.image_size)
    for round_index in range(2):
        kl_scores(model, images, labels, ScoreConfig(), device)
        print("score  ", memory(), flush=True)
        model = enhance_round(model, images, labels, torch.arange(n // 10), EnhanceConfig(), device, round_index)
        print("round  ", memory(), flush=True)
        predict_logits(model, images, device)
        print("predict", memory(), flush=True)
    print(f"peak - loaded: {memory()['VmHWM'] - loaded['VmHWM']} MiB", flush=True)
