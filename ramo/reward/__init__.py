"""Reward models: Bradley-Terry training on labeled pairs (`ramo rm train`).

Names are imported on first use: `ramo --help` imports every command's module, and this
package's trainer pulls in transformers' Trainer, which takes seconds to import.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "bradley_terry_loss": "ramo.reward.loss",
    "PreferenceDataset": "ramo.reward.data",
    "PreferenceCollator": "ramo.reward.data",
    "RewardTrainer": "ramo.reward.trainer",
    "disable_dropout": "ramo.reward.trainer",
    "train_reward_model": "ramo.reward.train",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'ramo.reward' has no attribute {name!r}")
    return getattr(importlib.import_module(_NAMES[name]), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
