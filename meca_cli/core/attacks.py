"""The eight backdoor attacks of the MeCa paper: static poisoning and test-time triggers.

`poison` bakes an attack into a copy of a uint8 training set and returns per-sample ground
truth (role and parameters) plus the tensors that rebuild its test trigger;
`apply_test_trigger` stamps that trigger on test images; `asr_population` says which test
images count towards the attack success rate. Formulas and defaults follow
`design/attacks.md` (the paper's Table I: 5 % poison, target 1).

Conventions:
* Images are uint8 N x 3 x H x W. Triggers are computed in float [0, 1] and rounded to uint8
  once, so samples outside the poison and cover sets come back bitwise unchanged.
* Every trigger is generated procedurally from a seed; no third-party image is used.
* Patch and blend-key triggers are designed on the 32 x 32 CIFAR frame and scaled to H x W
  with nearest-neighbour (patches keep crisp edges and their relative position). SIG, the
  WaNet warp field and the Adaptive-Blend piece grid are computed at H x W directly.
* Randomness comes from explicitly seeded `torch.Generator`s, one per purpose (selection,
  trigger content, per-sample draws), never from the global RNG.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from meca_cli.errors import ConfigError

ATTACK_NAMES = ("badnet", "blend", "sig", "wanet", "physicalba", "tact", "adaptive_blend", "adaptive_patch")
ROLES = ("clean", "poison", "cover")
BLEND_KEYS = ("cartoon", "noise")
PHYSICALBA_TRIGGERS = ("logo", "square")
# Adaptive-Patch training triggers, in the order of the `trigger=<j>` detail.
ADAPTIVE_PATCH_TRIGGERS = ("icon_corner", "logo_corner", "badnet_corners", "noise_square")

FRAME = 32  # side of the frame the patch and key triggers are designed on
DEFAULT_COVER_RATES = {"wanet": 0.05, "tact": 0.01, "adaptive_blend": 0.01, "adaptive_patch": 0.01}
_SUPERSAMPLE = 8  # render procedural drawings at 8x and area-downsample (antialiasing)
_CHUNK = 2048  # images per float batch, bounds memory on large test sets


@dataclass(frozen=True)
class AttackConfig:
    """One attack and its parameters; defaults are the product defaults of attacks.md."""

    name: str
    rate: float = 0.05  # poison count = int(N * rate)
    target: int = 1
    seed: int = 0  # selection and per-sample draws
    cover_rate: float | None = None  # None -> DEFAULT_COVER_RATES (0 when absent)
    trigger_seed: int | None = None  # trigger content (noise keys, WaNet field); None -> seed
    source: int = 0  # TaCT
    cover_classes: tuple[int, ...] = (5, 7)  # TaCT
    blend_alpha: float = 0.2
    blend_key: str = "cartoon"  # also the Adaptive-Blend key
    sig_delta: float = 30 / 255
    sig_freq: float = 6.0
    wanet_k: int = 4
    wanet_s: float = 0.5
    wanet_grid_rescale: float = 1.0
    wanet_shared_noise: bool = False  # one noise field for all covers (static-toolbox variant)
    physicalba_trigger: str = "logo"
    adaptive_blend_alpha_train: float = 0.15
    adaptive_blend_alpha_test: float = 0.2
    adaptive_blend_pieces: int = 16
    adaptive_blend_mask_rate: float = 0.5
    adaptive_patch_alphas: tuple[float, float, float, float] = (0.5, 0.2, 0.5, 0.3)

    def __post_init__(self) -> None:
        _check_choice("attack", self.name, ATTACK_NAMES)
        _check_choice("blend key", self.blend_key, BLEND_KEYS)
        _check_choice("PhysicalBA trigger", self.physicalba_trigger, PHYSICALBA_TRIGGERS)
        _check_unit("rate", self.rate)
        if self.cover_rate is not None:
            _check_unit("cover rate", self.cover_rate)
        for label, value in (("blend alpha", self.blend_alpha), ("sig delta", self.sig_delta),
                             ("adaptive-blend train alpha", self.adaptive_blend_alpha_train),
                             ("adaptive-blend test alpha", self.adaptive_blend_alpha_test),
                             ("adaptive-blend mask rate", self.adaptive_blend_mask_rate),
                             *(("adaptive-patch alpha", a) for a in self.adaptive_patch_alphas)):
            _check_unit(label, value)
        if len(self.adaptive_patch_alphas) != len(ADAPTIVE_PATCH_TRIGGERS):
            raise ConfigError(f"adaptive-patch alphas: need {len(ADAPTIVE_PATCH_TRIGGERS)} values, "
                              f"got {len(self.adaptive_patch_alphas)}")
        if math.isqrt(self.adaptive_blend_pieces) ** 2 != self.adaptive_blend_pieces or self.adaptive_blend_pieces < 1:
            raise ConfigError(f"adaptive-blend pieces must be a square number (4, 9, 16, ...), "
                              f"got {self.adaptive_blend_pieces}")
        if self.wanet_k < 2:
            raise ConfigError(f"wanet k must be at least 2, got {self.wanet_k}")
        if self.name == "sig" and self.effective_cover_rate > 0:
            raise ConfigError("sig is a clean-label attack and has no cover samples; set the cover rate to 0")
        if self.name == "tact":
            if self.source == self.target:
                raise ConfigError(f"tact source class {self.source} equals the target class")
            if self.source in self.cover_classes:
                raise ConfigError(f"tact cover classes {list(self.cover_classes)} include "
                                  f"the source class {self.source}")

    @property
    def effective_cover_rate(self) -> float:
        """The cover rate in use: the explicit value, else the attack's default."""
        return DEFAULT_COVER_RATES.get(self.name, 0.0) if self.cover_rate is None else self.cover_rate

    @property
    def effective_trigger_seed(self) -> int:
        """The seed of the trigger content: the explicit value, else the selection seed."""
        return self.seed if self.trigger_seed is None else self.trigger_seed


@dataclass
class PoisonResult:
    """A poisoned training set with per-sample ground truth."""

    images: torch.Tensor  # uint8 N x 3 x H x W; clean samples bitwise equal to the input
    labels: torch.Tensor  # int64 N, labels after poisoning
    roles: list[str]  # "clean" | "poison" | "cover"
    details: list[str]  # per-sample attack parameters, "" when there are none
    trigger_state: dict[str, torch.Tensor]  # tensors that rebuild the test trigger

    @property
    def poison_indices(self) -> torch.Tensor:
        """Indices of samples whose role is poison."""
        return torch.tensor([i for i, r in enumerate(self.roles) if r == "poison"], dtype=torch.int64)

    @property
    def cover_indices(self) -> torch.Tensor:
        """Indices of samples whose role is cover."""
        return torch.tensor([i for i, r in enumerate(self.roles) if r == "cover"], dtype=torch.int64)


def _check_choice(label: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {label} {value!r}; choose one of {', '.join(choices)}")


def _check_unit(label: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{label} must be in [0, 1], got {value}")


# --------------------------------------------------------------------------------------
# Seeds, conversions, the stamp


def _generator(seed: int, stream: str) -> torch.Generator:
    """A generator for one purpose; distinct streams of one seed are independent."""
    digest = hashlib.sha256(f"meca.attacks:{stream}:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32) / 255.0


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def _quantise(x: torch.Tensor) -> torch.Tensor:
    """Round a float image to 8-bit levels, as if it had been saved as a PNG."""
    return _to_uint8(x).to(torch.float32) / 255.0


def stamp(x: torch.Tensor, pattern: torch.Tensor, mask: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Masked blend x + alpha * m * (t - x); alpha 1 with a binary mask replaces pixels."""
    return x + alpha * mask.unsqueeze(-3) * (pattern - x)


def _fit(frame: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale a trigger (... x 32 x 32) to the image size with nearest-neighbour."""
    if frame.shape[-2:] == (height, width):
        return frame
    lead = frame.shape[:-2]
    flat = frame.reshape(1, -1, *frame.shape[-2:])
    return F.interpolate(flat, size=(height, width), mode="nearest-exact").reshape(*lead, height, width)


# --------------------------------------------------------------------------------------
# Procedural trigger content


def _supersampled_grid(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel centre coordinates, in output-pixel units, of an 8x render."""
    r = (torch.arange(rows * _SUPERSAMPLE, dtype=torch.float64) + 0.5) / _SUPERSAMPLE
    c = (torch.arange(cols * _SUPERSAMPLE, dtype=torch.float64) + 0.5) / _SUPERSAMPLE
    return torch.meshgrid(r, c, indexing="ij")


def _ellipse(r: torch.Tensor, c: torch.Tensor, cy: float, cx: float, ry: float, rx: float) -> torch.Tensor:
    return ((r - cy) / ry) ** 2 + ((c - cx) / rx) ** 2 <= 1.0


def _rect(r: torch.Tensor, c: torch.Tensor, r0: float, r1: float, c0: float, c1: float) -> torch.Tensor:
    return (r >= r0) & (r < r1) & (c >= c0) & (c < c1)


def _rgb(colour: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.float64).view(3, 1, 1) / 255.0


def _downsample(canvas: torch.Tensor) -> torch.Tensor:
    """Area-downsample an 8x render and round to 8-bit levels."""
    return _quantise(F.avg_pool2d(canvas.unsqueeze(0), _SUPERSAMPLE)[0].to(torch.float32))


def cartoon_key() -> torch.Tensor:
    """A 3 x 32 x 32 cartoon blend key: a white cat-like face on a dotted pastel background.

    Fixed shapes, no randomness. It stands in for the Hello Kitty key of the reference
    toolboxes with the same character: large flat colour regions, thin dark outlines,
    mean RGB about (204, 182, 151), about 26 % near-white and 3 % near-black pixels.
    Coordinates below are in output pixels of the 32 x 32 frame.
    """
    r, c = _supersampled_grid(FRAME, FRAME)
    canvas = _rgb((245, 185, 205)).expand(3, *r.shape).clone()
    dark, white, yellow, blue = (40, 40, 40), (255, 255, 255), (250, 205, 50), (70, 120, 215)

    def paint(region: torch.Tensor, colour: tuple[int, int, int]) -> None:
        canvas[:, region] = _rgb(colour).view(3, 1)

    def outlined(cy: float, cx: float, ry: float, rx: float, fill: tuple[int, int, int]) -> None:
        paint(_ellipse(r, c, cy, cx, ry + line, rx + line), dark)
        paint(_ellipse(r, c, cy, cx, ry, rx), fill)

    line = 0.9
    # Staggered yellow polka dots break up the background like a printed wallpaper.
    spacing, dot = 6.0, 2.0
    band = torch.floor(r / spacing)
    dy = r - (band + 0.5) * spacing
    dx = torch.remainder(c + torch.remainder(band, 2) * spacing / 2, spacing) - spacing / 2
    paint(dy**2 + dx**2 <= dot**2, yellow)
    # Torso: yellow shirt over blue trousers, outlined.
    paint(_rect(r, c, 23, 33, 7 - line, 25 + line), dark)
    paint(_rect(r, c, 23 + line, 33, 7, 25), blue)
    paint(_rect(r, c, 23 + line, 29, 7, 25), yellow)
    for ear_x in (9.0, 23.0):
        outlined(5.5, ear_x, 4.5, 4.0, white)
    outlined(14.5, 16.0, 9.5, 10.5, white)  # head, ~2/3 of the width
    for eye_x in (11.5, 20.5):
        paint(_ellipse(r, c, 15.5, eye_x, 2.2, 1.6), dark)
    paint(_ellipse(r, c, 18.2, 16.0, 1.0, 1.5), yellow)  # nose
    for whisker_y in (16.5, 18.5, 20.5):
        paint(_rect(r, c, whisker_y - 0.35, whisker_y + 0.35, 2.5, 8.5), dark)
        paint(_rect(r, c, whisker_y - 0.35, whisker_y + 0.35, 23.5, 29.5), dark)
    for bow_x in (21.0, 27.5):  # bow at the top right of the head
        outlined(5.0, bow_x, 3.3, 3.0, yellow)
    outlined(5.0, 24.25, 1.5, 1.5, yellow)
    return _downsample(canvas)


def noise_key(generator: torch.Generator, height: int = FRAME, width: int = FRAME) -> torch.Tensor:
    """I.i.d. uniform 8-bit RGB noise, 3 x height x width in [0, 1]."""
    return torch.randint(0, 256, (3, height, width), generator=generator).to(torch.float32) / 255.0


def logo_patch() -> tuple[torch.Tensor, torch.Tensor]:
    """A 13 x 13 logo-like disk: a red-orange-yellow ring around a blue-purple core.

    Returns (pattern 3 x 13 x 13, mask 13 x 13). The mask is the disk of radius 6.4 around
    pixel (6, 6) (pixels more than half covered: 129 px); the ring colour sweeps with the
    polar angle and darkens mildly toward the rim; the core (radius 3.5) sits 1 px up-left.
    Mean colour over the mask is about (186, 110, 74).
    """
    size, radius, core_radius = 13, 6.4, 3.5
    r, c = _supersampled_grid(size, size)
    centre = size / 2
    dy, dx = r - centre, c - centre
    rho = torch.sqrt(dy**2 + dx**2)
    sweep = (torch.atan2(dy, dx) + math.pi) / (2 * math.pi)  # 0..1 around the disk
    stops = torch.tensor([(220, 40, 30), (250, 140, 20), (255, 210, 40)], dtype=torch.float64) / 255.0
    half = (sweep < 0.5).unsqueeze(0)
    low = torch.where(half, stops[0].view(3, 1, 1), stops[1].view(3, 1, 1))
    high = torch.where(half, stops[1].view(3, 1, 1), stops[2].view(3, 1, 1))
    frac = torch.where(sweep < 0.5, sweep * 2, sweep * 2 - 1).unsqueeze(0)
    ring = (low + (high - low) * frac) * (1 - 0.05 * (rho / radius) ** 2)
    core_cy = core_cx = centre - 0.7  # ~1 px toward the upper-left
    in_core = _ellipse(r, c, core_cy, core_cx, core_radius, core_radius)
    t = ((r - (core_cy - core_radius)) / (2 * core_radius)).clamp(0, 1).unsqueeze(0)
    core = _rgb((40, 70, 210)) * (1 - t) + _rgb((90, 40, 160)) * t
    inside = (rho <= radius).to(torch.float64)
    colour = torch.where(in_core.unsqueeze(0), core, ring) * inside
    coverage = F.avg_pool2d(inside[None, None], _SUPERSAMPLE)[0, 0]
    summed = F.avg_pool2d(colour.unsqueeze(0), _SUPERSAMPLE)[0]
    mask = (coverage > 0.5).to(torch.float32)
    pattern = _quantise((summed / coverage.clamp_min(1e-12)).to(torch.float32)) * mask
    return pattern, mask


# Phoenix-like 5 x 5 icon: a left-right symmetric flame, brightest down the centre column.
_ICON_PALETTE = ((255, 255, 255), (200, 220, 250), (120, 160, 240), (63, 110, 230))
_ICON_LAYOUT = (
    (3, 1, 0, 1, 3),
    (2, 1, 0, 1, 2),
    (1, 0, 0, 0, 1),
    (2, 1, 0, 1, 2),
    (3, 1, 0, 1, 3),
)


def icon_patch() -> torch.Tensor:
    """The 5 x 5 bluish icon (3 x 5 x 5); every pixel is part of its mask."""
    palette = torch.tensor(_ICON_PALETTE, dtype=torch.float32) / 255.0
    return palette[torch.tensor(_ICON_LAYOUT)].permute(2, 0, 1).contiguous()


# BadNet 3 x 3 black/white corner pattern of the toolbox (1 = white).
_BADNET_PATTERN = ((0, 0, 1), (0, 1, 0), (1, 0, 1))


def _empty_frame() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(3, FRAME, FRAME), torch.zeros(FRAME, FRAME)


def _place(patch: torch.Tensor, mask: torch.Tensor, row: int, col: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put a patch (3 x h x w, mask h x w) on an empty frame with its top-left at (row, col)."""
    pattern, frame_mask = _empty_frame()
    h, w = mask.shape
    pattern[:, row : row + h, col : col + w] = patch
    frame_mask[row : row + h, col : col + w] = mask
    return pattern, frame_mask


def white_square_trigger() -> tuple[torch.Tensor, torch.Tensor]:
    """BadNet: a white 3 x 3 square at rows/cols 29-31 (bottom-right)."""
    return _place(torch.ones(3, 3, 3), torch.ones(3, 3), FRAME - 3, FRAME - 3)


def logo_trigger() -> tuple[torch.Tensor, torch.Tensor]:
    """The 13 x 13 logo-like patch at rows 1-13, cols 18-30 (top-right)."""
    patch, mask = logo_patch()
    return _place(patch, mask, 1, 18)


def noise_square_trigger(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """TaCT: an opaque 8 x 8 uniform-noise square at rows/cols 21-28."""
    return _place(noise_key(generator, 8, 8), torch.ones(8, 8), 21, 21)


def icon_corner_trigger() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5 x 5 icon at rows/cols 27-31 (bottom-right)."""
    return _place(icon_patch(), torch.ones(5, 5), FRAME - 5, FRAME - 5)


def icon_two_corners_trigger() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5 x 5 icon at both bottom corners (rows 27-31, cols 0-4 and 27-31)."""
    left, left_mask = _place(icon_patch(), torch.ones(5, 5), FRAME - 5, 0)
    right, right_mask = icon_corner_trigger()
    return left + right, left_mask + right_mask


def badnet_corners_trigger() -> tuple[torch.Tensor, torch.Tensor]:
    """The BadNet 3 x 3 black/white pattern in all four corners; mask = the four full blocks."""
    block = torch.tensor(_BADNET_PATTERN, dtype=torch.float32).expand(3, 3, 3)
    pattern, mask = _empty_frame()
    for row in (0, FRAME - 3):
        for col in (0, FRAME - 3):
            pattern[:, row : row + 3, col : col + 3] = block
            mask[row : row + 3, col : col + 3] = 1.0
    return pattern, mask


def _overlay(first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """One opaque stamp equal to stamping `first` then `second` (both alpha 1, binary masks)."""
    (p1, m1), (p2, m2) = first, second
    return torch.where(m2.bool(), p2, p1), torch.maximum(m1, m2)


def blend_key(config: AttackConfig) -> torch.Tensor:
    """The Blend / Adaptive-Blend key selected by the config."""
    if config.blend_key == "noise":
        return noise_key(_generator(config.effective_trigger_seed, "noise_key"))
    return cartoon_key()


def sig_signal(delta: float, freq: float, width: int) -> torch.Tensor:
    """SIG row signal v(j) = delta * sin(2 pi f j / W), shape (width,)."""
    j = torch.arange(width, dtype=torch.float64)
    return (delta * torch.sin(2 * math.pi * freq * j / width)).to(torch.float32)


def wanet_control(generator: torch.Generator, k: int) -> torch.Tensor:
    """WaNet control grid P (2 x k x k), uniform in [-1, 1], rescaled to mean |P| = 1."""
    control = torch.rand(2, k, k, generator=generator) * 2 - 1
    return control / control.abs().mean()


def wanet_grid(control: torch.Tensor, height: int, width: int, strength: float,
               grid_rescale: float = 1.0) -> torch.Tensor:
    """Backdoor sampling grid G = clamp((I + s * D / H) * rescale, -1, 1), H x W x 2 (x first)."""
    displacement = F.interpolate(control.unsqueeze(0), size=(height, width), mode="bicubic",
                                 align_corners=True)[0].permute(1, 2, 0)
    ys, xs = torch.linspace(-1, 1, height), torch.linspace(-1, 1, width)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    identity = torch.stack((gx, gy), dim=-1)
    return ((identity + strength * displacement / height) * grid_rescale).clamp(-1, 1)


def wanet_noise_grid(grid: torch.Tensor, noise_seed: int) -> torch.Tensor:
    """Cover grid clamp(G + E / H, -1, 1) with E ~ U[-1, 1] drawn from `noise_seed`."""
    height = grid.shape[0]
    noise = torch.rand(grid.shape, generator=torch.Generator().manual_seed(noise_seed)) * 2 - 1
    return (grid + noise / height).clamp(-1, 1)


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Resample float images (n x 3 x H x W) through one grid (H x W x 2) or one per image."""
    if grid.dim() == 3:
        grid = grid.expand(x.shape[0], *grid.shape)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


# --------------------------------------------------------------------------------------
# Trigger state: everything the test trigger (and an audit of the training one) needs


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float32)


def _stamp_state(train: list[tuple[torch.Tensor, torch.Tensor]], alphas: list[float],
                 test: tuple[torch.Tensor, torch.Tensor], test_alpha: float) -> dict[str, torch.Tensor]:
    """State of a stamp attack: K training triggers (patterns, masks, alphas) and the test one."""
    return {
        "train_pattern": torch.stack([p for p, _ in train]),
        "train_mask": torch.stack([m for _, m in train]),
        "train_alpha": torch.tensor(alphas, dtype=torch.float32),
        "test_pattern": test[0].clone(),
        "test_mask": test[1].clone(),
        "test_alpha": _scalar(test_alpha),
    }


def build_trigger_state(config: AttackConfig, height: int, width: int) -> dict[str, torch.Tensor]:
    """The tensors that define the attack's triggers (patches and keys at 32 x 32)."""
    name, seed = config.name, config.effective_trigger_seed
    if name == "sig":
        return {"sig_delta": _scalar(config.sig_delta), "sig_freq": _scalar(config.sig_freq)}
    if name == "wanet":
        control = wanet_control(_generator(seed, "wanet_control"), config.wanet_k)
        return {
            "wanet_control": control,
            "wanet_strength": _scalar(config.wanet_s),
            "wanet_grid_rescale": _scalar(config.wanet_grid_rescale),
            "wanet_grid": wanet_grid(control, height, width, config.wanet_s, config.wanet_grid_rescale),
        }
    if name == "badnet":
        square = white_square_trigger()
        return _stamp_state([square], [1.0], square, 1.0)
    if name == "physicalba":
        trigger = logo_trigger() if config.physicalba_trigger == "logo" else white_square_trigger()
        return _stamp_state([trigger], [1.0], trigger, 1.0)
    if name == "tact":
        square = noise_square_trigger(_generator(seed, "noise_square"))
        return _stamp_state([square], [1.0], square, 1.0)
    if name in ("blend", "adaptive_blend"):
        key = (blend_key(config), torch.ones(FRAME, FRAME))
        if name == "blend":
            return _stamp_state([key], [config.blend_alpha], key, config.blend_alpha)
        return _stamp_state([key], [config.adaptive_blend_alpha_train], key, config.adaptive_blend_alpha_test)
    # adaptive_patch: four sparse training triggers; an asymmetric opaque test trigger.
    train = [icon_corner_trigger(), logo_trigger(), badnet_corners_trigger(),
             noise_square_trigger(_generator(seed, "noise_square"))]
    test = _overlay(icon_two_corners_trigger(), badnet_corners_trigger())
    return _stamp_state(train, list(config.adaptive_patch_alphas), test, 1.0)


# --------------------------------------------------------------------------------------
# Selection


def _shuffled(candidates: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return candidates[torch.randperm(candidates.numel(), generator=generator)]


def select_indices(labels: torch.Tensor, config: AttackConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Poison and cover indices (sorted, disjoint) per attacks.md section 0.

    A seeded shuffle of all indices gives poison = first int(N * rate), cover = next
    int(N * cover_rate). SIG draws from target-class images only and TaCT draws poison from
    the source class and covers from the cover classes; their counts are capped by the
    number of candidates.
    """
    total = labels.numel()
    n_poison, n_cover = int(total * config.rate), int(total * config.effective_cover_rate)
    generator = _generator(config.seed, "select")
    if config.name == "sig":
        candidates = _shuffled(torch.nonzero(labels == config.target).flatten(), generator)
        return candidates[:n_poison].sort().values, torch.empty(0, dtype=torch.int64)
    if config.name == "tact":
        in_cover_classes = torch.isin(labels, torch.tensor(config.cover_classes, dtype=labels.dtype))
        sources = _shuffled(torch.nonzero(labels == config.source).flatten(), generator)
        covers = _shuffled(torch.nonzero(in_cover_classes).flatten(), generator)
        return sources[:n_poison].sort().values, covers[:n_cover].sort().values
    if n_poison + n_cover > total:
        raise ConfigError(f"rate {config.rate} + cover rate {config.effective_cover_rate} exceed the {total} images")
    order = torch.randperm(total, generator=generator)
    return order[:n_poison].sort().values, order[n_poison : n_poison + n_cover].sort().values


# --------------------------------------------------------------------------------------
# Training-time triggers, one function per attack family. Each takes a float batch of the
# selected images (in index order) and returns the triggered batch and per-image details.


def _stamp_all(x: torch.Tensor, state: dict[str, torch.Tensor], generator: torch.Generator,
               config: AttackConfig, role: str) -> tuple[torch.Tensor, list[str]]:
    """BadNet, Blend, TaCT: the single training trigger on every image."""
    _, _, height, width = x.shape
    pattern, mask = _fit(state["train_pattern"][0], height, width), _fit(state["train_mask"][0], height, width)
    return stamp(x, pattern, mask, state["train_alpha"][0]), [""] * x.shape[0]


def _sig_train(x: torch.Tensor, state: dict[str, torch.Tensor], generator: torch.Generator,
               config: AttackConfig, role: str) -> tuple[torch.Tensor, list[str]]:
    return _add_signal(x, state), [""] * x.shape[0]


def _add_signal(x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """SIG: clip(x + v) with the stored amplitude and frequency."""
    signal = sig_signal(float(state["sig_delta"][0]), float(state["sig_freq"][0]), x.shape[-1])
    return (x + signal).clamp(0, 1)


def _wanet_train(x: torch.Tensor, state: dict[str, torch.Tensor], generator: torch.Generator,
                 config: AttackConfig, role: str) -> tuple[torch.Tensor, list[str]]:
    """WaNet: poison through G; covers through G plus per-image (or shared) seeded noise."""
    grid = state["wanet_grid"]
    if role == "poison":
        return warp(x, grid), [""] * x.shape[0]
    count = 1 if config.wanet_shared_noise else x.shape[0]
    seeds = torch.randint(0, 2**31 - 1, (count,), generator=generator).tolist()
    if config.wanet_shared_noise:
        seeds = seeds * x.shape[0]
    grids = torch.stack([wanet_noise_grid(grid, s) for s in seeds])
    return warp(x, grids), [f"noise_seed={s}" for s in seeds]


@dataclass(frozen=True)
class PhysicalDraw:
    """One draw of the PhysicalBA transformation: flip, then jitter, then affine."""

    flip: bool
    brightness: float  # factor in [0.8, 1.2]
    contrast: float  # factor in [0.8, 1.2]
    angle: float  # degrees in [-10, 10]
    translate: tuple[int, int]  # pixels (x, y), |t| <= 0.1 * size, rounded like RandomAffine
    scale: float  # in [0.8, 0.9]

    def describe(self) -> str:
        """The draw as `key=value` pairs (values are exactly those applied)."""
        return (f"flip={int(self.flip)} brightness={self.brightness:.6f} contrast={self.contrast:.6f} "
                f"angle={self.angle:.6f} translate={self.translate[0]},{self.translate[1]} scale={self.scale:.6f}")


def draw_physical(generator: torch.Generator, height: int, width: int) -> PhysicalDraw:
    """Draw flip (p 0.5), ColorJitter(0.2, 0.2) and RandomAffine(10, (0.1, 0.1), (0.8, 0.9)) parameters."""

    def uniform(low: float, high: float) -> float:
        # Rounded to 6 decimals so the recorded detail reproduces the image exactly.
        return round(low + (high - low) * float(torch.rand(1, generator=generator)), 6)

    flip = float(torch.rand(1, generator=generator)) < 0.5
    brightness, contrast = uniform(0.8, 1.2), uniform(0.8, 1.2)
    angle = uniform(-10.0, 10.0)
    tx = int(round(uniform(-0.1 * width, 0.1 * width)))
    ty = int(round(uniform(-0.1 * height, 0.1 * height)))
    return PhysicalDraw(flip, brightness, contrast, angle, (tx, ty), uniform(0.8, 0.9))


def apply_physical(x: torch.Tensor, draw: PhysicalDraw) -> torch.Tensor:
    """Apply one draw to a float image (3 x H x W); nearest interpolation, black fill.

    Brightness is applied before contrast (torchvision's ColorJitter picks that order at
    random; a fixed order keeps the record to the factors alone).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if draw.flip:
        x = TF.horizontal_flip(x)
    x = TF.adjust_contrast(TF.adjust_brightness(x, draw.brightness), draw.contrast)
    return TF.affine(x, angle=draw.angle, translate=list(draw.translate), scale=draw.scale, shear=[0.0, 0.0],
                     interpolation=InterpolationMode.NEAREST, fill=[0.0, 0.0, 0.0])


def _physical_train(x: torch.Tensor, state: dict[str, torch.Tensor], generator: torch.Generator,
                    config: AttackConfig, role: str) -> tuple[torch.Tensor, list[str]]:
    """PhysicalBA: stamp, then one seeded draw of the physical transformation per image."""
    stamped, _ = _stamp_all(x, state, generator, config, role)
    height, width = x.shape[-2:]
    draws = [draw_physical(generator, height, width) for _ in range(x.shape[0])]
    out = torch.stack([apply_physical(img, d) for img, d in zip(stamped, draws)]) if draws else stamped
    return out, [d.describe() for d in draws]


def piece_mask(kept: list[int], grid: int, height: int, width: int) -> torch.Tensor:
    """H x W mask that is 1 on the kept pieces of a grid x grid split (row-major ids)."""
    rows = [round(i * height / grid) for i in range(grid + 1)]
    cols = [round(i * width / grid) for i in range(grid + 1)]
    mask = torch.zeros(height, width)
    for piece in kept:
        i, j = divmod(piece, grid)
        mask[rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = 1.0
    return mask


def _adaptive_blend_train(x: torch.Tensor, state: dict[str, torch.Tensor], generator: torch.Generator,
                          config: AttackConfig, role: str) -> tuple[torch.Tensor, list[str]]:
    """Adaptive-Blend: the key at the training alpha on a fresh random subset of pieces per image."""
    _, _, height, width = x.shape
    pieces, grid = config.adaptive_blend_pieces, math.isqrt(config.adaptive_blend_pieces)
    n_kept = pieces - int(pieces * config.adaptive_blend_mask_rate)
    key = _fit(state["train_pattern"][0], height, width)
    out, details = torch.empty_like(x), []
    for i in range(x.shape[0]):
        kept = sorted(torch.randperm(pieces, generator=generator)[:n_kept].tolist())
        out[i] = stamp(x[i], key, piece_mask(kept, grid, height, width), state["train_alpha"][0])
        details.append("pieces=" + ",".join(map(str, kept)))
    return out, details


def patch_assignment(count: int, k: int = len(ADAPTIVE_PATCH_TRIGGERS)) -> torch.Tensor:
    """Trigger id per position: contiguous, balanced blocks (position p -> floor(p * k / count))."""
    return torch.arange(count) * k // max(count, 1)


def _adaptive_patch_train(x: torch.Tensor, state: dict[str, torch.Tensor], generator: torch.Generator,
                          config: AttackConfig, role: str) -> tuple[torch.Tensor, list[str]]:
    """Adaptive-Patch: exactly one of the four triggers per image, at that trigger's alpha.

    The selected set is a random sample, so contiguous blocks over it are a random, balanced
    assignment.
    """
    _, _, height, width = x.shape
    ids = patch_assignment(x.shape[0])
    patterns, masks = _fit(state["train_pattern"], height, width), _fit(state["train_mask"], height, width)
    alphas = state["train_alpha"]
    out = stamp(x, patterns[ids], masks[ids], alphas[ids].view(-1, 1, 1, 1))
    return out, [f"trigger={j}" for j in ids.tolist()]


_TRAIN = {
    "badnet": _stamp_all,
    "blend": _stamp_all,
    "tact": _stamp_all,
    "sig": _sig_train,
    "wanet": _wanet_train,
    "physicalba": _physical_train,
    "adaptive_blend": _adaptive_blend_train,
    "adaptive_patch": _adaptive_patch_train,
}


# --------------------------------------------------------------------------------------
# Public entry points


def _check_images(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 N x 3 x H x W, got {images.dtype} {tuple(images.shape)}")


def _check_classes(labels: torch.Tensor, num_classes: int, config: AttackConfig) -> None:
    """Every class the config names, and every label, must exist."""
    named = [("target", config.target)]
    if config.name == "tact":
        named += [("source", config.source)] + [("cover class", c) for c in config.cover_classes]
    for label, value in named:
        if not 0 <= value < num_classes:
            raise ConfigError(f"{config.name}: {label} {value} is not a class (there are {num_classes})")
    if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")


def poison(images: torch.Tensor, labels: torch.Tensor, num_classes: int, config: AttackConfig) -> PoisonResult:
    """Poison a uint8 training set (N x 3 x H x W) with the configured attack.

    Poison samples get the training trigger and the target label (SIG keeps the label);
    cover samples get the trigger (or its noise variant) and keep their label; all other
    samples are returned bitwise unchanged.
    """
    _check_images(images)
    if labels.dim() != 1 or labels.numel() != images.shape[0]:
        raise ValueError(f"labels must be a vector of {images.shape[0]} entries, got {tuple(labels.shape)}")
    labels = labels.to(torch.int64)
    _check_classes(labels, num_classes, config)
    height, width = images.shape[-2:]
    state = build_trigger_state(config, height, width)
    poison_idx, cover_idx = select_indices(labels, config)
    per_sample = _generator(config.seed, "per_sample")
    out_images, out_labels = images.clone(), labels.clone()
    roles, details = ["clean"] * images.shape[0], [""] * images.shape[0]
    for role, idx in (("poison", poison_idx), ("cover", cover_idx)):
        if idx.numel() == 0:
            continue
        triggered, notes = _TRAIN[config.name](_to_float(images[idx]), state, per_sample, config, role)
        out_images[idx] = _to_uint8(triggered)
        for i, note in zip(idx.tolist(), notes):
            roles[i], details[i] = role, note
    if config.name != "sig":  # SIG is clean-label
        out_labels[poison_idx] = config.target
    return PoisonResult(out_images, out_labels, roles, details, state)


def _test_trigger(x: torch.Tensor, config: AttackConfig, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The test trigger on one float batch."""
    height, width = x.shape[-2:]
    if config.name == "sig":
        return _add_signal(x, state)
    if config.name == "wanet":
        grid = wanet_grid(state["wanet_control"], height, width, float(state["wanet_strength"][0]),
                          float(state["wanet_grid_rescale"][0]))
        return warp(x, grid)
    pattern, mask = _fit(state["test_pattern"], height, width), _fit(state["test_mask"], height, width)
    return stamp(x, pattern, mask, state["test_alpha"][0])


def apply_test_trigger(images: torch.Tensor, config: AttackConfig, trigger_state: dict[str, torch.Tensor]
                       ) -> torch.Tensor:
    """uint8 N x 3 x H x W -> uint8 copies carrying the attack's test trigger.

    The test trigger differs from training for adaptive_blend (alpha 0.2, no piece mask),
    adaptive_patch (icons at both bottom corners + BadNet pattern in four corners, alpha 1),
    physicalba (plain stamp, no transformation) and wanet (grid without noise). Trigger
    content is read from `trigger_state` (as returned by `poison`), so a saved state
    reproduces the training-time trigger exactly.
    """
    _check_images(images)
    out = torch.empty_like(images)
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK]
        out[start : start + _CHUNK] = _to_uint8(_test_trigger(_to_float(chunk), config, trigger_state))
    return out


def asr_population(labels: torch.Tensor, config: AttackConfig) -> torch.Tensor:
    """Bool mask of test samples counted in the ASR: true label != target; TaCT: source class only."""
    if config.name == "tact":
        return labels == config.source
    return labels != config.target
