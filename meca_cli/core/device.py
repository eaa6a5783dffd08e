"""Device choice and the per-device speed settings (bf16 autocast, channels-last on CUDA)."""

from __future__ import annotations

import contextlib
import os

import torch

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


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def to_float(batch_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images -> float [0, 1] on the device (channels-last on CUDA)."""
    x = batch_u8.to(device, non_blocking=True).float().div_(255)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} / {torch.cuda.get_device_name(device)}"
    return str(device)
