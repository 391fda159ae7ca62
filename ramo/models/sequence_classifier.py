"""Loading single-score reward models: any AutoModelForSequenceClassification with one output
(what `ramo rm train --heads single` trains and saves)."""

from __future__ import annotations

import os
import re

import torch


def load_reward_model(name_or_path: str | os.PathLike = "default", *, seed: int | None = None,
                      dtype: torch.dtype | None = None, require_head: bool = False):
    """(AutoModelForSequenceClassification with num_labels=1, tokenizer).

    name_or_path: "default" (ramo's embedded all-MiniLM-L6-v2), a local folder or a hub id.
    A backbone without a one-score head gets a new, randomly initialised one; `seed` makes
    that initialisation reproducible (every torchrun rank must start from the same weights).
    A model whose head has several outputs is an error, not silently replaced.
    require_head: the model must already be a sequence classifier (evaluation: a random new
    head would score at chance and look like a trained model).

    Decoders often have no pad token: the tokenizer then pads with its EOS token, and the
    model config gets that pad_token_id, since sequence-classification decoders read each
    row's score at its last token that is not a pad.
    """
    from transformers import AutoModelForSequenceClassification, set_seed

    from ramo.encoders import resolve
    from ramo.tokenization import load_tokenizer

    path = resolve(name_or_path)
    config = _config(path, name_or_path)
    heads = getattr(config, "num_labels", 1)
    if _has_classification_head(config) and heads != 1:
        raise ValueError(f"{name_or_path}: a classifier with {heads} outputs; a reward model "
                         f"needs exactly one (num_labels=1)")
    if require_head and not _has_classification_head(config):
        raise ValueError(f"{name_or_path}: not a reward model: its config names no "
                         f"...ForSequenceClassification architecture (a bare backbone would get "
                         f"a random scoring head)")
    config.num_labels = 1
    if seed is not None:
        set_seed(seed)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config, **kwargs)
    tokenizer = load_tokenizer(path, name_or_path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _config(path: str, name: str | os.PathLike):
    from transformers import AutoConfig

    if not os.path.isdir(path) and not _HUB_ID.match(str(path)):
        raise FileNotFoundError(f"{name}: no such model folder")
    try:
        return AutoConfig.from_pretrained(path)
    except OSError as exc:  # no such hub id, or no network: one line, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileNotFoundError(f"{name}: not a model folder, and not loadable as a hub id "
                                f"({first})") from exc


# "name" or "org/name": anything else that is not a folder here is a mistyped path.
_HUB_ID = re.compile(r"^[A-Za-z0-9_][\w.-]*(/[\w.-]+)?$")


def _has_classification_head(config) -> bool:
    architectures = getattr(config, "architectures", None) or []
    return any("SequenceClassification" in name for name in architectures)
