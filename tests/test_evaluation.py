"""Model metrics: accuracy overall, per class and on the target; attack success rate."""

import math
from types import SimpleNamespace

import pytest
import torch

from meca_cli.core.evaluation import model_metrics


class Folder(SimpleNamespace):
    image_size = 4

    def __len__(self) -> int:
        return len(self.images)


class AlwaysZero(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.int64), 3).float()


def test_a_model_that_never_predicts_the_target_shows_it():
    # Its ASR for target 1 is 0 by construction; the metrics must show why: it has no
    # accuracy at all on the target's own clean images.
    classes = ["a", "b", "c"]
    clean = Folder(images=torch.zeros(6, 3, 4, 4, dtype=torch.uint8), labels=torch.tensor([0, 0, 1, 1, 1, 2]),
                   classes=classes)
    triggered = Folder(images=torch.zeros(4, 3, 4, 4, dtype=torch.uint8), classes=["a", "c"])
    got = model_metrics(AlwaysZero(), SimpleNamespace(classes=classes, image_size=4), clean, triggered, 1, torch.device("cpu"))
    assert got["asr"] == 0.0
    assert got["accuracy"] == pytest.approx(2 / 6)
    assert got["class_accuracy"] == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert got["target_accuracy"] == 0.0


def test_without_a_target_there_is_no_target_accuracy():
    classes = ["a", "b", "c"]
    clean = Folder(images=torch.zeros(3, 3, 4, 4, dtype=torch.uint8), labels=torch.tensor([0, 1, 2]), classes=classes)
    got = model_metrics(AlwaysZero(), SimpleNamespace(classes=classes, image_size=4), clean, None, None, torch.device("cpu"))
    assert "target_accuracy" not in got and "asr" not in got
    assert got["class_accuracy"] == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_edited_verdicts_or_ground_truth_get_a_one_line_error(tmp_path):
    from meca_cli.core.evaluation import detection_metrics
    from meca_cli.errors import ArtifactError

    truth, verdicts = tmp_path / "ground_truth.csv", tmp_path / "verdicts.csv"
    truth.write_text("index,role\n0,clean\n1,poison\n")
    verdicts.write_text("index,kl,verdict\n0,0.5,clean\n1,0.01,suspected\n")
    assert detection_metrics(verdicts, truth)["recall"] == 1.0
    verdicts.write_text("index,kl,verdict\n0,0.5,clean\n7,0.01,suspected\n")
    with pytest.raises(ArtifactError, match=r"verdicts.csv:3: sample 7 is not in"):
        detection_metrics(verdicts, truth)
    truth.write_text("index,role\n0,clean\n5,poison\n")
    with pytest.raises(ArtifactError, match="indices are not 0..1"):
        detection_metrics(verdicts, truth)


def test_round_metrics_follow_the_poison_through_the_unlearned_sets(tmp_path):
    from meca_cli.core.evaluation import round_metrics

    truth = tmp_path / "ground_truth.csv"
    truth.write_text("index,role\n0,poison\n1,poison\n2,clean\n3,clean\n")
    run = tmp_path / "run"
    for folder in ("score", "partition", "enhance/rounds"):
        (run / folder).mkdir(parents=True)
    # Round 1: step 2's score ranks one poison as the least robust sample, and the seed takes it.
    (run / "score/scores.csv").write_text("index,kl,conf\n0,0.9,0.2\n1,0.1,0.3\n2,0.5,0.8\n3,0.4,0.9\n")
    (run / "partition/clean_seed.idx").write_text("0\n")
    # Round 2: the re-scoring ranks both poisons most robust; the unlearned set is clean.
    (run / "enhance/rounds/round2_scores.csv").write_text("index,kl\n0,0.01\n1,0.02\n2,0.6\n3,0.7\n")
    (run / "enhance/rounds/round2_clean.idx").write_text("2\n3\n")
    got = round_metrics(run, truth)
    assert [(r["round"], r["unlearned"], r["poison_unlearned"], r["poison_unlearned_share"]) for r in got] == \
        [(1, 1, 1, 0.5), (2, 2, 0, 0.0)]
    assert got[0]["auroc"] == pytest.approx(0.5) and got[1]["auroc"] == 1.0
    # The poisoned model is less confident in the poison's labels than in the clean ones'.
    assert got[0]["conf_auroc"] == 0.0 and math.isnan(got[1]["conf_auroc"])  # round 2 kept no conf column
    # A run made before the rounds were kept reports its first round only.
    for p in (run / "enhance/rounds").iterdir():
        p.unlink()
    assert [r["round"] for r in round_metrics(run, truth)] == [1]
