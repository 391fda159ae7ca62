"""Where a model runs when the caller does not say: one rule for the judge, the adapter and the
reward models."""

from __future__ import annotations

import os

import torch


def default_device(name: str | torch.device | None = None) -> torch.device:
    """`name` when given; else this rank's GPU (LOCAL_RANK, so ranks under torchrun do not all
    land on GPU 0) when CUDA is there; else the CPU. A name torch does not know, or a GPU
    this machine's torch cannot reach, is a ValueError here, before any model loads."""
    if name:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device {str(name)!r}: not a device torch knows ({exc})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(name)!r}: this torch sees no CUDA GPU "
                             "(torch.cuda.is_available() is False); use cpu")
        if device.type == "cuda" and device.index is not None \
                and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(name)!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA GPUs")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
