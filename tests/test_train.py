import torch

from meca_cli.core.augment import flip_crop
from meca_cli.core.models import ARCHS, build_model
from meca_cli.config import TrainConfig
from meca_cli.core.train import fit, lr_at


def _data(n=48, size=16, classes=3):
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(n) % classes
    images = (labels.view(-1, 1, 1, 1) * 80 + torch.randint(0, 40, (n, 3, size, size), generator=gen)).to(torch.uint8)
    return images, labels


def _train(epochs, state=None, tag="t"):
    images, labels = _data()
    torch.manual_seed(0)
    model = build_model("smallcnn", 3, 16)
    cfg = TrainConfig(epochs=epochs, min_steps=0, batch_size=16, lr=0.05, seed=3)
    return fit(model, images, labels, cfg, torch.device("cpu"), state_path=state, state_tag=tag)


def test_resume_equals_uninterrupted(tmp_path):
    state = tmp_path / "train_state.safetensors"
    full = _train(4)
    # Run 2 of 4 epochs, as if killed after epoch 2: the state file says 2 epochs are done.
    images, labels = _data()
    torch.manual_seed(0)
    model = build_model("smallcnn", 3, 16)
    cfg = TrainConfig(epochs=4, min_steps=0, batch_size=16, lr=0.05, seed=3)
    calls = []

    class Stop(Exception):
        pass

    def stop_after_two(epoch, metrics):
        calls.append(epoch)
        if epoch == 1:
            raise Stop

    try:
        fit(model, images, labels, cfg, torch.device("cpu"), state_path=state, state_tag="t", on_epoch=stop_after_two)
    except Stop:
        pass
    assert state.is_file()
    resumed = _train(4, state=state, tag="t")
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_state_of_another_config_is_ignored(tmp_path):
    state = tmp_path / "train_state.safetensors"
    _train(1, state=state, tag="other")
    a = _train(2, state=state, tag="mine")
    b = _train(2)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


def test_training_learns():
    images, labels = _data()
    model = _train(6)
    from meca_cli.core.train import predict_logits

    acc = (predict_logits(model, images, torch.device("cpu")).argmax(1) == labels).float().mean()
    assert acc > 0.9


def test_lr_schedule_warms_up_and_decays():
    cfg = TrainConfig(lr=1.0, warmup=0.2)
    lrs = [lr_at(cfg, s, 100) for s in range(100)]
    assert max(lrs) == 1.0 and lrs[0] < 0.1 and lrs[-1] < 0.02
    assert lr_at(TrainConfig(lr=0.3, schedule="constant"), 50, 100) == 0.3


def _flip_pad_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The augmentation by its definition: flip, reflect-pad, crop (on floats)."""
    import torch.nn.functional as F

    n, _, h, w = x.shape
    flips = torch.rand(n, generator=generator) < 0.5
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    x = torch.where(flips.view(n, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return torch.stack([padded[i, :, r:r + h, c:c + w] for i, (r, c) in enumerate(shifts.tolist())])


def test_flip_crop_on_uint8_is_flip_pad_crop_bit_for_bit():
    images = torch.randint(0, 256, (64, 3, 9, 11), dtype=torch.uint8)  # not square: rows and columns apart
    for seed in range(3):
        got = flip_crop(images, torch.Generator().manual_seed(seed))
        want = _flip_pad_crop(images.float(), torch.Generator().manual_seed(seed))
        assert got.dtype == torch.uint8 and torch.equal(got.float(), want)


def test_flip_crop_keeps_shape_and_content():
    x = torch.rand(8, 3, 16, 16)
    y = flip_crop(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    # Crops of a reflect-padded image by at most 4 px: the centre pixel survives somewhere nearby.
    assert not torch.equal(x, y)


def test_every_architecture_builds_and_runs():
    for arch in ARCHS:
        model = build_model(arch, 4, 32).eval()
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_unlearning_loss_modes():
    import math

    import torch.nn.functional as F

    from meca_cli.core.train import unlearning_loss

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    ce = F.cross_entropy(logits, y, reduction="none")
    w = torch.tensor([1.0, -0.5, -0.5])
    ascent = unlearning_loss(logits, ce, w, "ascent", ceiling=math.log(10))
    assert torch.allclose(ascent[0], ce[0])
    assert torch.allclose(ascent[1], -0.5 * ce[1])  # CE = ln 3 < ln 10: still ascending
    assert ascent[2] == 0  # CE ~ 5 > ln 10: ascent stopped at the ceiling
    uniform = unlearning_loss(logits, ce, w, "uniform", ceiling=math.log(10))
    assert torch.allclose(uniform[1], torch.tensor(0.5 * math.log(3)))  # already uniform: the minimum
    assert uniform[2] > uniform[1]  # a confident sample is pushed towards uniform


def test_small_folders_get_more_epochs():
    from meca_cli.core.train import effective_epochs

    assert effective_epochs(TrainConfig(epochs=20, min_steps=600), steps_per_epoch=79) == 20
    assert effective_epochs(TrainConfig(epochs=20, min_steps=600), steps_per_epoch=16) == 38
    assert effective_epochs(TrainConfig(epochs=3, min_steps=0), steps_per_epoch=1) == 3


def test_compile_is_opt_in_and_checkpoints_keep_their_keys(monkeypatch, tmp_path):
    from meca_cli.core.device import prepare_model, stage
    from meca_cli.core.models import build_model
    from meca_cli.store.checkpoint import ModelMeta, load_tensors, save_model

    cpu = torch.device("cpu")
    model = build_model("smallcnn", 3, 16)
    keys = set(model.state_dict())
    assert prepare_model(model, cpu) is model  # no compiling unless asked
    monkeypatch.setenv("MECA_COMPILE", "1")
    compiled = prepare_model(model, cpu)
    assert hasattr(compiled, "_orig_mod") and set(compiled.state_dict()) != keys  # the wrapper renames them ...
    save_model(tmp_path / "m.safetensors", compiled, ModelMeta("smallcnn", ["a", "b", "c"], 16))
    assert set(load_tensors(tmp_path / "m.safetensors")[0]) == keys  # ... and the checkpoint does not
    images = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    assert stage(images, cpu) is images  # on the CPU the data stays where it is


class _BatchSizes(torch.nn.Module):
    """A linear model that records the size of every training batch it sees."""

    def __init__(self, size=16, classes=3):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, classes))
        self.sizes: list[int] = []

    def forward(self, x):
        if self.training:
            self.sizes.append(len(x))
        return self.net(x)


def test_epochs_split_into_even_batches_with_no_straggler():
    # 49 images at batch size 16 would end each epoch on a batch of one.
    images, labels = _data(n=49)
    for even, expected in ((True, [13, 12, 12, 12]), (False, [16, 16, 16, 1])):
        model = _BatchSizes()
        cfg = TrainConfig(epochs=2, min_steps=0, batch_size=16, even_batches=even, augment=False)
        fit(model, images, labels, cfg, torch.device("cpu"))
        assert model.sizes == expected * 2


def test_a_subsample_trains_all_of_one_part_and_a_fresh_share_of_the_other(monkeypatch):
    from meca_cli.core import train as train_module
    from meca_cli.core.train import Subsample

    images, labels = _data(n=60)
    always, sampled = torch.arange(0, 12), torch.arange(12, 60)
    marks = {tuple(images[i, 0, 0].tolist()): i for i in range(len(images))}  # each image's first row
    assert len(marks) == len(images)
    seen: list[set[int]] = [set()]  # the images of each epoch
    real_flip_crop = train_module.flip_crop

    def spy(batch, gen):
        seen[-1].update(marks[tuple(row.tolist())] for row in batch[:, 0, 0])
        return real_flip_crop(batch, gen)

    monkeypatch.setattr(train_module, "flip_crop", spy)
    pool = Subsample(always, sampled, 0.25)
    assert len(pool) == 12 + 12
    cfg = TrainConfig(epochs=3, min_steps=0, batch_size=8, lr=0.05, seed=3, augment=True)
    torch.manual_seed(0)
    fit(build_model("smallcnn", 3, 16), images, labels, cfg, torch.device("cpu"), indices=pool,
        on_epoch=lambda e, m: seen.append(set()))
    epochs = seen[:3]
    for ids in epochs:
        assert set(always.tolist()) <= ids  # every epoch: all of `always`
        assert len(ids - set(always.tolist())) == 12  # and a quarter of the rest
    assert len(set.union(*epochs)) > 24  # drawn afresh each epoch
