"""Tokenizers and the one (prompt, response) -> model inputs encoding.

Below both ramo.models and ramo.reward: a reward model is scored in evaluation on exactly the
token layout it was trained on, because training, evaluation and the rule-head model's pair
comparison all call `encode` and `pad` from here. A drift there (a different truncation side,
a template applied in one place and not the other) would lower accuracy silently, with no
error anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch


def load_tokenizer(path: str | os.PathLike, name: str | os.PathLike | None = None,
                   padding_side: str | None = None):
    """The model's tokenizer, padding with its EOS token when it has no pad token (decoders);
    on `padding_side` when given ("left" for generation)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path, **({"padding_side": padding_side} if padding_side else {}))
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{name or path}: the tokenizer has neither a pad nor an EOS token "
                             f"to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def uses_chat_template(tokenizer) -> bool:
    """True when `encode` renders through the tokenizer's chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def encode(tokenizer, prompt: str | Sequence[dict], response: str,
           max_length: int) -> dict[str, list[int]]:
    """Model inputs (input_ids, attention_mask, and token_type_ids where the tokenizer makes
    them) for one response to one prompt, at most `max_length` tokens.

    prompt: text, or the prompt's messages (a conversation: `Pair.model_prompt`).

    - A tokenizer with a chat template (chat decoders) renders the prompt's messages (a text
      prompt is one user turn) and then [assistant: response] as text, which is tokenized
      again with the tokenizer's special tokens: RewardBench's formatting, so a model scores
      here as it does there. Where the template writes a BOS and the tokenizer adds another,
      one is dropped (RewardBench keeps both and masks the first). When too long, tokens are
      dropped from the front (after a leading BOS, which is kept): a decoder reward model
      reads its score at the last token, so the end of the response must survive.
    - Otherwise (encoders: MiniLM, BERT, DeBERTa, ...) the text pair (prompt, response) with
      the tokenizer's special tokens. When too long, the response keeps as many tokens as fit
      (from its start) and the prompt gets the rest (its end: the turn the response answers).
      The response is what differs between the two sides of a pair; the prompt is shared.
      A conversation is its `conversation_text`.
    """
    from ramo.io.conversations import conversation_text

    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if uses_chat_template(tokenizer):
        return _encode_chat(tokenizer, prompt, response, max_length)
    text = prompt if isinstance(prompt, str) else conversation_text(prompt)
    return _encode_text_pair(tokenizer, text, response, max_length)


def _encode_chat(tokenizer, prompt: str | Sequence[dict], response: str,
                 max_length: int) -> dict[str, list[int]]:
    from ramo.io.conversations import as_messages

    messages = as_messages(prompt) + [{"role": "assistant", "content": response}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = list(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])
    bos = tokenizer.bos_token_id
    if bos is not None and len(ids) > 1 and ids[0] == ids[1] == bos:
        ids = ids[1:]
    if len(ids) > max_length:
        head = ids[:1] if bos is not None and ids[0] == bos and max_length > 1 else []
        ids = head + ids[len(ids) - (max_length - len(head)):]
    return {"input_ids": ids, "attention_mask": [1] * len(ids)}


def _encode_text_pair(tokenizer, prompt: str, response: str,
                      max_length: int) -> dict[str, list[int]]:
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text after the "
                         f"tokenizer's special tokens")
    if getattr(tokenizer, "is_fast", False):
        # One call with special tokens; sequence_ids says which tokens are the prompt's (0),
        # the response's (1) or special (None), so truncation works for any special layout
        # ([CLS] p [SEP] r [SEP], <s> p </s></s> r </s>, ...).
        full = tokenizer(prompt, response, verbose=False)
        sequence = full.sequence_ids()
        n_prompt, n_response = sequence.count(0), sequence.count(1)
        keep_response = min(n_response, budget)
        drop_prompt = n_prompt - min(n_prompt, budget - keep_response)
        keep, seen = [], {0: 0, 1: 0}
        for s in sequence:
            if s is None:
                keep.append(True)
                continue
            rank = seen[s]
            seen[s] += 1
            keep.append(rank >= drop_prompt if s == 0 else rank < keep_response)
        return {key: [v for v, k in zip(values, keep) if k] for key, values in full.items()}
    # Python ("slow") tokenizers: truncate the pieces, then let the tokenizer add its specials.
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"]
    r = r[:budget]
    p = p[len(p) - min(len(p), budget - len(r)):]
    ids = tokenizer.build_inputs_with_special_tokens(p, r)
    out = {"input_ids": ids, "attention_mask": [1] * len(ids)}
    if "token_type_ids" in tokenizer.model_input_names:
        out["token_type_ids"] = tokenizer.create_token_type_ids_from_sequences(p, r)
    return out


def count_truncated(tokenizer, prompts: Sequence, responses: Sequence[str],
                    max_length: int) -> int:
    """How many of the (prompt, response) sequences `encode` cuts at max_length."""
    return sum(len(encode(tokenizer, p, r, _NO_LIMIT)["input_ids"]) > max_length
               for p, r in zip(prompts, responses))


# Long enough for any text: encode's length before truncation.
_NO_LIMIT = 1 << 40

# RewardBench's length; what `input_limit` allows at most by default.
DEFAULT_LENGTH_CAP = 2048


def input_limit(model, tokenizer) -> int:
    """The longest input the model takes: its position embeddings and the tokenizer's
    model_max_length where they say (a tokenizer without a limit says 10^30), at most
    DEFAULT_LENGTH_CAP."""
    config = getattr(model, "config", None)
    limits = [DEFAULT_LENGTH_CAP]
    positions = getattr(config, "max_position_embeddings", None) if config is not None else None
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and 0 < stated < 10**9:
        limits.append(stated)
    return min(limits)


def check_max_length(model, max_length: int) -> None:
    """ValueError when max_length is more than the model's position embeddings: a longer input
    fails inside a model with learned positions, and runs past what any other was trained on."""
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None) if config is not None else None
    if isinstance(positions, int) and positions > 0 and max_length > positions:
        raise ValueError(f"max_length = {max_length} is more than the model's {positions} "
                         "positions; give at most that")


def pad(rows: list[dict[str, list[int]]], tokenizer) -> dict[str, torch.Tensor]:
    """Stack encoded rows into [len(rows), longest] tensors on the tokenizer's padding side.

    input_ids are padded with the pad token, token_type_ids with the tokenizer's pad type id,
    everything else (attention_mask) with 0.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token (load_tokenizer sets one for "
                         "decoders)")
    width = max(len(r["input_ids"]) for r in rows)
    fill = {"input_ids": tokenizer.pad_token_id,
            "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    left = getattr(tokenizer, "padding_side", "right") == "left"
    out = {}
    for key in rows[0]:
        value = fill.get(key, 0)
        padded = [([value] * (width - len(r[key])) + r[key]) if left
                  else (r[key] + [value] * (width - len(r[key]))) for r in rows]
        out[key] = torch.tensor(padded, dtype=torch.long)
    return out
