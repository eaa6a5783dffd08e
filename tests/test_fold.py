"""Eval passes run a copy with BatchNorm folded into its conv (core.fold), in channels-last
layout (core.device): the same function as the model, never a change to the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from meca_cli.config import ScoreConfig
from meca_cli.core.fold import fold_batchnorm
from meca_cli.core.models import ARCHS, build_model
from meca_cli.core.scoring import kl_scores


def _with_trained_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with non-trivial running statistics and affine terms, as after training."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return model


@pytest.mark.parametrize("arch", ARCHS)
def test_folding_leaves_no_batch_norm_and_the_same_function(arch):
    torch.manual_seed(0)
    model = _with_trained_statistics(build_model(arch, 10, 32)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert (got.argmax(1) == want.argmax(1)).all()
    # The model itself is untouched: same weights, its batch norms still there.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_folding_does_not_change_the_mode_of_a_training_model():
    model = build_model("smallcnn", 3, 32).train()
    fold_batchnorm(model)
    assert model.training and all(m.training for m in model.modules())


def test_a_batch_norm_not_fed_by_a_conv_stays():
    torch.manual_seed(0)
    model = _with_trained_statistics(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))).eval()
    folded = fold_batchnorm(model)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 1
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-6)


def test_a_conv_used_twice_is_not_folded_into_one_of_its_batch_norms():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn_a, self.bn_b = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn_a(self.conv(x)) + self.bn_b(self.conv(x))

    torch.manual_seed(0)
    model = _with_trained_statistics(Shared()).eval()
    x = torch.rand(2, 3, 5, 5)
    with torch.no_grad():
        assert torch.allclose(fold_batchnorm(model)(x), model(x), atol=1e-6)


def test_the_score_of_the_folded_model_is_the_score_of_the_model():
    torch.manual_seed(0)
    model = _with_trained_statistics(build_model("smallcnn", 4, 16)).eval()
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    labels = torch.randint(0, 4, (40,))
    cfg = ScoreConfig(batch_size=16)
    folded = kl_scores(model, images, labels, cfg, torch.device("cpu"))  # folds inside
    # The unfolded reference: the same batches through the model itself.
    from meca_cli.core.scoring import patch_positions, score_batch

    corners = patch_positions(len(images), 16, cfg)
    kl, pred, _, _ = score_batch(model.eval(), images.float() / 255, labels, corners, cfg)
    assert torch.equal(folded.pred, pred)
    assert torch.allclose(folded.kl, kl, rtol=1e-3, atol=1e-6)


def test_checkpoints_do_not_depend_on_the_layout(tmp_path):
    from meca_cli.store.checkpoint import save_tensors

    torch.manual_seed(0)
    model = build_model("smallcnn", 3, 32)
    save_tensors(tmp_path / "a.safetensors", model.state_dict(), {})
    save_tensors(tmp_path / "b.safetensors", model.to(memory_format=torch.channels_last).state_dict(), {})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_the_layout_can_be_turned_off(monkeypatch):
    from meca_cli.core.device import memory_format, to_float

    batch = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    assert to_float(batch, torch.device("cpu")).is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setenv("MECA_CHANNELS_LAST", "0")
    assert memory_format() == torch.contiguous_format
    assert to_float(batch, torch.device("cpu")).is_contiguous()
