import math

import torch
from torch import nn

from meca_cli.config import ScoreConfig
from meca_cli.core.scoring import kl_divergence, kl_scores, patch_mask, patch_positions


class Linear2(nn.Module):
    """logits = W @ flatten(x): small enough to compute the score by hand."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def test_kl_divergence_matches_hand_computation():
    p = torch.tensor([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    q = torch.tensor([[0.0, 0.0]])  # softmax = (1/2, 1/2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert torch.allclose(kl_divergence(p, q), torch.tensor([expected]), atol=1e-6)
    assert float(kl_divergence(p, p)) == 0.0


def test_patch_mask_places_square():
    mask = patch_mask(torch.tensor([[1, 2]]), 5, 2)
    assert mask.shape == (1, 1, 5, 5)
    assert mask.sum() == 4
    assert mask[0, 0, 1:3, 2:4].sum() == 4


def test_score_of_hand_built_model():
    # One 3x2x2 image (12 inputs), two classes; class 1 has positive weight on every input.
    weight = torch.zeros(2, 12)
    weight[1] = 1.0
    model = Linear2(weight)
    image = torch.full((1, 3, 2, 2), 128, dtype=torch.uint8)
    cfg = ScoreConfig(eps=0.1, patch=1, masks=1, seed=0)
    s = kl_scores(model, image, torch.tensor([1]), cfg, torch.device("cpu"))
    # Prediction is class 1 (logit 12*128/255 vs 0). The FGSM step ascends CE(pred), so it
    # lowers the class-1 logit: -eps on the 3 channels of the one masked pixel.
    x = 128 / 255
    logit_before = torch.tensor([[0.0, 12 * x]])
    logit_after = torch.tensor([[0.0, 12 * x - 3 * 0.1]])
    assert int(s.pred) == 1
    assert torch.allclose(s.kl, kl_divergence(logit_before, logit_after), atol=1e-6)
    assert torch.allclose(s.conf, torch.softmax(logit_before, 1)[:, 1], atol=1e-6)


def test_positions_do_not_depend_on_sharding():
    cfg = ScoreConfig(patch=2, masks=3, seed=5)
    full = patch_positions(100, 32, cfg)
    assert full.shape == (100, 3, 2)
    assert torch.equal(full, patch_positions(100, 32, cfg))
    assert int(full.max()) <= 30 and int(full.min()) >= 0


def test_sharded_scores_equal_whole():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 4, (10,))
    cfg = ScoreConfig(batch_size=3, masks=2)
    whole = kl_scores(model, images, labels, cfg, torch.device("cpu"))
    a = kl_scores(model, images, labels, cfg, torch.device("cpu"), 0, 4)
    b = kl_scores(model, images, labels, cfg, torch.device("cpu"), 4, 10)
    assert torch.allclose(torch.cat([a.kl, b.kl]), whole.kl, atol=1e-6)


def test_scores_do_not_depend_on_the_batch_size():
    # The batch size is chosen by the device for speed alone (config.EVAL_BATCH): in eval
    # mode a convolutional model with BatchNorm must give every sample the same score whatever
    # it is batched with.
    from meca_cli.core.models import build_model
    from meca_cli.core.train import predict_logits

    torch.manual_seed(0)
    model = build_model("smallcnn", 10, 16)
    images = torch.randint(0, 256, (70, 3, 16, 16), dtype=torch.uint8)
    labels = torch.randint(0, 10, (70,))
    cpu = torch.device("cpu")
    chosen = kl_scores(model, images, labels, ScoreConfig(), cpu)
    for batch_size in (7, 32, 256):
        other = kl_scores(model, images, labels, ScoreConfig(batch_size=batch_size), cpu)
        assert torch.allclose(other.kl, chosen.kl, rtol=1e-5, atol=1e-7)
        assert torch.equal(other.pred, chosen.pred)
    assert torch.allclose(predict_logits(model, images, cpu, batch_size=5), predict_logits(model, images, cpu), atol=1e-5)
