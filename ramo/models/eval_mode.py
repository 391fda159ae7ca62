"""Scoring with a model in eval mode, whatever mode its caller left it in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Inside: the model in eval mode (no dropout, so a score does not depend on the call);
    after: each of its modules in the mode it had (a wrapper in train mode may hold a backbone
    in eval mode, which `model.train()` would not give back), so that scoring in the middle of
    training leaves it as it was."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
