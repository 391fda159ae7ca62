"""Attention of a batch of rule suffixes over one shared, cached conversation prefix, reading
the prefix's keys and values in place.

The judge prefills a response's conversation once and then runs batches of short rule
suffixes after it. Handing transformers a key/value cache for that makes every batch copy the
prefix's keys and values into [batch, ...] tensors (the cache's concatenation), and the eager
attention then repeats them once more for grouped-query heads. Here the suffix batch runs
without a cache, under an attention implementation registered with transformers
(`AttentionInterface`) that takes the prefix's [1, kv heads, P, d] keys and values from a
context variable and computes, per key/value head, one matrix product of all the batch's
queries (batch x query heads of the group x suffix length rows) with the prefix keys, plus
the small causal product of each suffix with itself; the two parts share one softmax (a
common maximum and normaliser), in fp32 (fp64 for fp64 models). Nothing of size batch x P is written but the scores.

Used on the CPU for models whose attention is plain scaled dot-product attention over every
earlier position: no logit soft-capping, and no sliding window shorter than prefix + suffix
(`supports`). The right-padded suffixes need no mask beyond the causal one, as in the cached
path (see rule_judge.py).
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

NAME = "ramo_shared_prefix"
_PREFIX: contextvars.ContextVar = contextvars.ContextVar("ramo_shared_prefix_kv", default=None)
_registered = False


def supports(config, length: int) -> bool:
    """Whether a model of this config attends like this module over `length` positions."""
    if getattr(config, "attn_logit_softcapping", None) or getattr(config, "use_sinks", False):
        return False
    window = getattr(config, "sliding_window", None)
    return window is None or length <= window


def shared_prefix_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask, scaling: float | None = None, dropout: float = 0.0,
                            **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [b, h, s, d], key/value of the suffix
    [b, hkv, s, d] (h a multiple of hkv; query head i uses key head i // (h / hkv)); returns
    [b, s, h, dv]. The prefix of module.layer_idx comes from `use_prefix`."""
    prefix = _PREFIX.get()
    if prefix is None:
        raise RuntimeError(f"{NAME} attention runs only inside ramo.judge.prefix_attention.use_prefix")
    prefix_key, prefix_value = prefix[module.layer_idx]  # [1, hkv, P, d], [1, hkv, P, dv]
    b, h, s, d = query.shape
    hkv, dv = key.shape[1], value.shape[-1]
    g = h // hkv
    scale = d ** -0.5 if scaling is None else scaling
    acc = torch.promote_types(query.dtype, torch.float32)  # the softmax's dtype
    q = query.reshape(b, hkv, g * s, d)  # rows: (query head in the group, suffix position)
    # Prefix part: one [b g s, d] x [d, P] product per key/value head.
    q_heads = q.transpose(0, 1).reshape(hkv, b * g * s, d)
    on_prefix = torch.matmul(q_heads, prefix_key[0].transpose(-1, -2)).to(acc).mul_(scale)
    # Suffix part: causal, each suffix with itself.
    on_suffix = torch.matmul(q, key.transpose(-1, -2)).to(acc).mul_(scale)
    later = torch.ones(s, s, dtype=torch.bool, device=query.device).triu_(1)
    on_suffix.masked_fill_(later.repeat(g, 1), float("-inf"))
    on_prefix = on_prefix.view(hkv, b, g * s, -1)
    top = torch.maximum(on_prefix.amax(-1).transpose(0, 1), on_suffix.amax(-1))  # [b, hkv, g s]
    on_prefix.sub_(top.transpose(0, 1)[..., None]).exp_()
    on_suffix.sub_(top[..., None]).exp_()
    total = on_prefix.sum(-1).transpose(0, 1) + on_suffix.sum(-1)
    out = torch.matmul(on_prefix.view(hkv, b * g * s, -1).to(value.dtype), prefix_value[0])
    out = out.view(hkv, b, g * s, dv).transpose(0, 1) + torch.matmul(on_suffix.to(value.dtype), value)
    out = out / total[..., None].to(out.dtype)
    return out.reshape(b, h, s, dv).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def use_prefix(model, prefix_kv: list[tuple[torch.Tensor, torch.Tensor]]):
    """Within: the model attends with shared_prefix_attention over prefix_kv (per layer,
    [1, hkv, P, d] keys and values); its own attention setting is restored afterwards."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, shared_prefix_attention)
        _registered = True
    config = model.config
    before = config._attn_implementation
    token = _PREFIX.set(prefix_kv)
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before
        _PREFIX.reset(token)
