"""Attention of a batch of rule suffixes over one shared, cached conversation prefix, reading
the prefix's keys and values in place.

The judge prefills a response's conversation once and then runs batches of short rule
suffixes after it. Handing transformers a key/value cache for that makes every batch copy the
prefix's keys and values into [batch, ...] tensors (the cache's concatenation), and the eager
attention then repeats them once more for grouped-query heads. Here a batch of suffixes runs
as one packed sequence ([1, total length], each suffix's positions continuing the prefix's),
so the linear layers see no padding, without a cache, under an attention implementation
registered with transformers (`AttentionInterface`). It takes the prefix's [1, kv heads, P,
d] keys and values and the suffixes' lengths from a context variable and splits each query's
keys in two parts, each attended by torch's fused CPU attention kernel, which returns the
log-sum-exp of every query's scores beside its output:
  - the prefix: every suffix query sees all of it, so the packed queries attend to the
    [1, ...] prefix as they are, unmasked;
  - the suffix itself: causal within each suffix, the suffixes gathered into a right-padded
    [suffixes, heads, longest, d] batch (a padded query's output is dropped; a real query
    never sees a later position, so the padding needs no mask).
The two partial outputs are merged with weights exp(lse_part - lse_both), in fp32 (fp64 for
fp64 models): exactly softmax attention over the concatenated keys. Nothing of size suffixes
x P is written. Grouped-query heads are the kernel's (query head i uses key head i // (h /
hkv)).

Used on the CPU for models whose attention goes through transformers' attention interface
and is plain scaled dot-product attention over every earlier position with values as wide as
the keys: no logit soft-capping, no sliding window shorter than prefix + suffix, no separate
value head size (`supports`).
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

NAME = "ramo_shared_prefix"
_PREFIX: contextvars.ContextVar = contextvars.ContextVar("ramo_shared_prefix_kv", default=None)
_registered = False


def supports(model, length: int) -> bool:
    """Whether the model attends like this module over `length` positions. Only a model whose
    attention goes through transformers' attention interface takes this one: others (Bloom,
    GPT-Neo, MPT, Falcon with ALiBi) ignore the setting, and their packed suffixes would
    attend to each other instead of the prefix."""
    if not getattr(type(model), "_supports_attention_backend", False):
        return False
    config = model.config
    if getattr(config, "attn_logit_softcapping", None) or getattr(config, "use_sinks", False):
        return False
    value_dim = getattr(config, "v_head_dim", None)
    if value_dim is not None and value_dim != getattr(config, "head_dim", value_dim):
        return False
    window = getattr(config, "sliding_window", None)
    return window is None or length <= window


def _attend(query, key, value, causal: bool, scale: float):
    """(output [.., h, q, d] in the input dtype, log-sum-exp of each query's scores [.., h, q]
    in fp32, fp64 for fp64) of torch's fused CPU attention."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, is_causal=causal, scale=scale)


def shared_prefix_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask, scaling: float | None = None, dropout: float = 0.0,
                            **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [1, h, T, d], key/value [1, hkv, T,
    d] (h a multiple of hkv) of the packed suffixes; returns [1, T, h, d]. The prefix of
    module.layer_idx and the suffixes' layout come from `use_prefix`."""
    state = _PREFIX.get()
    if state is None:
        raise RuntimeError(f"{NAME} attention runs only inside ramo.judge.prefix_attention.use_prefix")
    prefix, (gather, rows, columns) = state
    prefix_key, prefix_value = prefix[module.layer_idx]  # [1, hkv, P, d] each
    d = query.shape[-1]
    scale = d ** -0.5 if scaling is None else scaling
    acc = torch.promote_types(query.dtype, torch.float32)
    on_prefix, lse_prefix = _attend(query, prefix_key, prefix_value, False, scale)
    # The suffix part, padded: [h, T, d] gathered to [h, suffixes, longest, d], then [T, h, ...].
    padded = [x[0][:, gather].transpose(0, 1) for x in (query, key, value)]
    on_suffix, lse_suffix = _attend(*padded, True, scale)
    on_suffix, lse_suffix = on_suffix[rows, :, columns], lse_suffix[rows, :, columns]
    on_prefix, lse_prefix = on_prefix[0].transpose(0, 1), lse_prefix[0].transpose(0, 1)
    lse = torch.logaddexp(lse_prefix, lse_suffix)
    out = (on_prefix.to(acc) * (lse_prefix - lse).exp_()[..., None]
           + on_suffix.to(acc) * (lse_suffix - lse).exp_()[..., None])
    return out.to(value.dtype)[None], None


def packed_layout(lengths: list[int], device=None) -> tuple[torch.Tensor, ...]:
    """For suffixes of these lengths packed one after another: gather [suffixes, longest], the
    packed index of each padded place (padding repeats the suffix's last token), and rows,
    columns [T], the padded place of each packed token."""
    n = torch.tensor(lengths, device=device)
    starts = n.cumsum(0) - n
    place = torch.arange(max(lengths), device=device)
    gather = starts[:, None] + torch.minimum(place[None, :], n[:, None] - 1)
    rows = torch.repeat_interleave(torch.arange(len(lengths), device=device), n)
    columns = torch.arange(int(n.sum()), device=device) - starts[rows]
    return gather, rows, columns


@contextlib.contextmanager
def use_prefix(model, prefix_kv: list[tuple[torch.Tensor, torch.Tensor]], lengths: list[int]):
    """Within: the model attends with shared_prefix_attention over prefix_kv (per layer,
    [1, hkv, P, d] keys and values), its input being suffixes of these lengths packed into one
    sequence; its own attention setting is restored afterwards."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, shared_prefix_attention)
        _registered = True
    config = model.config
    before = config._attn_implementation
    token = _PREFIX.set((prefix_kv, packed_layout(lengths, prefix_kv[0][0].device)))
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before
        _PREFIX.reset(token)
