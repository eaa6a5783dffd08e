"""Each peer defence's defining step, on tiny inputs."""

import torch
from torch import nn

from meca_cli.core.models import build_model
from meca_cli.defences import clp, finepruning, finetuning
from meca_cli.defences.clp import channel_lipschitz_bounds
from meca_cli.defences.finetuning import RepairConfig, mean_activation
from meca_cli.defences.pruning import conv_bn_pairs


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("smallcnn", 3, 16)


def test_conv_bn_pairs_cover_every_block_in_order():
    model = _model()
    pairs = conv_bn_pairs(model)
    assert len(pairs) == 6
    assert [conv.out_channels for _, conv, _ in pairs] == [32, 64, 64, 128, 128, 128]
    assert all(bn.num_features == conv.out_channels for _, conv, bn in pairs)
    resnet = build_model("resnet18", 3, 16)
    assert len(conv_bn_pairs(resnet)) == 20  # 17 convolutions + 3 downsample projections


def test_clp_bound_is_the_scaled_spectral_norm_and_prunes_the_outlier():
    model = _model().eval()
    name, conv, bn = conv_bn_pairs(model)[2]
    with torch.no_grad():
        conv.weight[5] *= 40  # one channel far more sensitive to its input than its layer
    bounds = channel_lipschitz_bounds(conv, bn)
    k = conv.weight[7].reshape(conv.weight.shape[1], -1)
    expected = torch.linalg.svdvals(k)[0] * bn.weight[7].abs() / torch.sqrt(bn.running_var[7] + bn.eps)
    assert torch.isclose(bounds[7], expected)
    pruned = clp(model, u=3.0)
    assert pruned.get(name) == 1
    assert bn.weight[5] == 0 and bn.bias[5] == 0 and bn.weight[4] != 0
    x = torch.rand(2, 3, 16, 16)
    out = {}
    bn.register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    model(x)
    assert (out["o"][:, 5] == 0).all()  # the pruned channel's output is gone


def _data(n=60, seed=1):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = (torch.rand(n, 3, 16, 16, generator=g) * 60 + labels.view(-1, 1, 1, 1) * 80).to(torch.uint8)
    return images, labels


def test_finetuning_learns_the_clean_set():
    images, labels = _data()
    model = _model()
    cfg = RepairConfig(epochs=15, batch_size=20, lr=0.05)
    model = finetuning(model, images, labels, torch.device("cpu"), cfg)
    from meca_cli.core.train import predict_logits

    assert (predict_logits(model, images, torch.device("cpu")).argmax(1) == labels).float().mean() > 0.9


def test_finepruning_prunes_dormant_channels_and_keeps_them_pruned():
    images, labels = _data()
    model = _model()
    _, _, bn = conv_bn_pairs(model)[-1]
    with torch.no_grad():
        bn.bias[:10] = -50  # ten channels that never fire on these images
    acts = mean_activation(model, bn, images, torch.device("cpu"))
    assert (acts[:10] == 0).all() and (acts > 0).sum() > 64
    order = acts.argsort(stable=True)
    # Pruning channels that never fire costs no accuracy, so even with no drop allowed the
    # first step (the ten most dormant) goes through.
    model, pruned = finepruning(model, images, labels, torch.device("cpu"),
                                RepairConfig(epochs=2, batch_size=20, prune_step=10 / 128, max_drop=0.0))
    assert pruned >= 10 and pruned < 128
    _, _, bn = conv_bn_pairs(model)[-1]
    gone = order[:pruned]
    assert (acts[order[:10]] == 0).all()
    assert (bn.weight[gone] == 0).all() and (bn.bias[gone] == 0).all()  # still zero after fine-tuning
    assert isinstance(model, nn.Module)


def test_reserved_clean_set_is_balanced_and_outside_the_run_subset(tmp_path):
    from meca_cli import poisoning, steps
    from meca_cli.peers import reserved_clean
    from tests.conftest import make_image_folder

    make_image_folder(tmp_path / "train", classes=3, per_class=30)
    common = steps.Common(device="cpu")
    images, labels = reserved_clean(tmp_path / "train", per_class=20, seed=0, common=common, fraction=0.25)
    assert torch.bincount(labels).tolist() == [5, 5, 5]
    source = steps.open_data(tmp_path / "train", common)
    subset = poisoning.balanced_subset(source.labels, 20, 0)
    as_rows = {tuple(img.flatten()[:64].tolist()) for img in source.images[subset]}
    assert not any(tuple(img.flatten()[:64].tolist()) in as_rows for img in images)  # never a training image


def test_finepruning_refuses_a_resnet_instead_of_pruning_nothing():
    import pytest

    from meca_cli.defences.finetuning import last_pruneable_bn
    from meca_cli.errors import ConfigError

    model = _model()
    assert last_pruneable_bn(model) is conv_bn_pairs(model)[-1][2]
    assert last_pruneable_bn(build_model("mobilenetv2", 3, 16)) is not None
    with pytest.raises(ConfigError, match="shortcut"):
        last_pruneable_bn(build_model("resnet18", 3, 16))
