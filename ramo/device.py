"""Where a model runs when the caller does not say: one rule for the judge, the adapter and the
reward models."""

from __future__ import annotations

import os

import torch


def default_device(name: str | torch.device | None = None) -> torch.device:
    """`name` when given; else this rank's GPU (LOCAL_RANK, so ranks under torchrun do not all
    land on GPU 0) when CUDA is there; else the CPU."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
