"""Device choice and the per-device speed settings.

Channels-last tensors on every device: oneDNN (CPU) and cuDNN both run convolutions
faster in that layout (measured on a 2-core x86 CPU: a smallcnn training step 1.4-1.5x,
resnet18 1.2x, mobilenetv2 1.5x; MECA_CHANNELS_LAST=0 turns it off). On CUDA also bf16
autocast and the whole uint8 data set resident on the GPU when it fits (else pinned host
memory for asynchronous copies); on the CPU those are no-ops (fp32 is faster and exact
there). MECA_COMPILE=1 compiles the model on either.
"""

from __future__ import annotations

import contextlib
import os

import torch

from meca_cli.config import EVAL_BATCH
from meca_cli.errors import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' picks CUDA (this rank's GPU under torchrun) when present, else CPU."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"unknown device {spec!r}", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available", hint="use --device cpu or auto")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op on CPU, where fp32 is faster and exact."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def eval_batch_size(device: torch.device, kind: str, requested: int | None = None) -> int:
    """`requested` if given, else the batch of a `kind` ("score" or "predict") pass on `device`."""
    if requested is not None:
        return requested
    return EVAL_BATCH["cuda" if device.type == "cuda" else "cpu"][kind]  # config.EVAL_BATCH says why


# The data set stays on the GPU only when it takes at most this share of the free memory;
# the rest is left for the model, its activations and the optimizer.
RESIDENT_SHARE = 0.5
_staged: dict = {}  # the last data set staged: (id, data pointer, device) -> its GPU or pinned copy


def memory_format() -> torch.memory_format:
    """The layout of models and image batches (module doc)."""
    return torch.contiguous_format if os.environ.get("MECA_CHANNELS_LAST") == "0" else torch.channels_last


def layout_name() -> str:
    """The layout as the benchmark records it beside a run's configuration."""
    return "channels_last" if memory_format() == torch.channels_last else "contiguous"


def compiling() -> bool:
    return os.environ.get("MECA_COMPILE") == "1"


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device` in the layout of memory_format(); compiled when MECA_COMPILE=1
    (opt-in: compiling costs a minute up front and pays off on long GPU runs). Checkpoints
    are unaffected: every save goes through models.unwrap, which strips the compiled
    wrapper's `_orig_mod.` prefix, and saves weights contiguous."""
    model = model.to(device).to(memory_format=memory_format())
    if compiling() and not hasattr(model, "_orig_mod"):
        model = torch.compile(model)
    return model


def stage(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Where a uint8 data set should live while `device` works on it: on the GPU itself when
    it takes at most RESIDENT_SHARE of the free memory (no copy per batch), else in pinned
    host memory (asynchronous copies); on the CPU, where it is."""
    if device.type != "cuda":
        return images
    key = (id(images), images.data_ptr(), str(device))
    if key not in _staged:  # one upload per data set, not one per fit / score / predict call
        _staged.clear()
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached, reusable
        fits = images.numel() * images.element_size() <= RESIDENT_SHARE * free
        _staged[key] = images.to(device) if fits else images.pin_memory()
    return _staged[key]


def to_float(batch_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images -> float [0, 1] on the device, in the layout of memory_format() (the
    conversion and the layout in one copy)."""
    return batch_u8.to(device, non_blocking=True).to(dtype=torch.float32, memory_format=memory_format()).div_(255)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} / {torch.cuda.get_device_name(device)}"
    return str(device)
