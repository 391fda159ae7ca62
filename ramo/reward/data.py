"""Preference data for reward models: loading, the one (prompt, response) -> inputs encoding,
and the collator that puts both sides of a batch of pairs into one forward pass.

Training and evaluation both call `encode`, so a model is always scored on exactly the token
layout it was trained on: a drift there (a different truncation side, a template applied in
one place and not the other) would lower accuracy silently, with no error anywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ramo.io import Pair, load_pairs
from ramo.io._problems import Problems, type_name
from ramo.io.jsonl import read_jsonl


@dataclass(frozen=True)
class Preference:
    """One labelled pair in TRL's preference format: `chosen` is the better response.

    margin: how much better (used by the loss when every pair has one), or None.
    rule_ids: the rules that labelled the pair (`ramo label` writes them), or None; kept for
    the record, not used by the loss.
    chosen_side: "a" or "b", which response of the original pair `chosen` is (`ramo label`
    writes it); what ties a preference to its judge ratings, which are stored by side.
    """

    id: str
    prompt: str
    chosen: str
    rejected: str
    margin: float | None = None
    rule_ids: tuple[str, ...] | None = None
    chosen_side: str | None = None


def load_preferences(path: str | os.PathLike, *,
                     allow_empty_responses: bool = False) -> list[Preference]:
    """Labelled pairs from JSONL(.gz), Parquet or JSON, in file order.

    Rows: `prompt`, `chosen`, `rejected` (or hh-rlhf transcripts without `prompt`, or
    `response_a`/`response_b` with `label` 0 or 1), optionally `margin` (a finite number) and
    `rule_ids` (a list of strings). Reading and the common checks are ramo.io.load_pairs's;
    ValueError names the file and each bad row (JSONL: its line number): malformed JSON,
    missing columns, empty responses, an unlabelled pair, a bad margin or rule_ids, and a
    margin present on some rows but not on others (a missing margin is not 0: filling it in
    would quietly train on a number nobody wrote).
    """
    pairs = load_pairs(path, allow_empty_responses=allow_empty_responses)
    if not pairs:
        raise ValueError(f"{os.fspath(path)}: no pairs in the file")
    problems = Problems(path)
    positions = _positions(path, len(pairs))
    out = _preferences(pairs, positions, problems)
    problems.raise_if_any()
    return out


def preferences_from_pairs(pairs: Sequence[Pair | Preference]) -> list[Preference]:
    """Preferences from pairs already in memory (loaded with ramo.io.load_pairs, say);
    the same checks as `load_preferences`, with each bad pair named by its id."""
    if all(isinstance(p, Preference) for p in pairs):
        return list(pairs)
    problems = Problems("pairs")
    as_pairs = [_as_pair(p) for p in pairs]
    out = _preferences(as_pairs, [f"pair {p.id!r}" for p in as_pairs], problems)
    problems.raise_if_any()
    return out


def _as_pair(item: Pair | Preference) -> Pair:
    if isinstance(item, Pair):
        return item
    if isinstance(item, Preference):
        extra = {"margin": item.margin} if item.margin is not None else {}
        if item.rule_ids is not None:
            extra["rule_ids"] = list(item.rule_ids)
        if item.chosen_side is not None:
            extra["chosen_side"] = item.chosen_side
        return Pair(id=item.id, prompt=item.prompt, response_a=item.chosen,
                    response_b=item.rejected, label=0, extra=extra)
    raise ValueError(f"expected ramo.io.Pair or Preference objects, got {type_name(item)}")


def _positions(path: str | os.PathLike, count: int) -> list[str]:
    """Where each pair is in the file, as load_pairs names rows ("line N" / "row i").

    load_pairs does not return positions; after it has accepted the file every record is one
    pair, in order, so reading the records again lines them up one to one.
    """
    if str(path).lower().endswith((".jsonl", ".jsonl.gz")):
        return [where for where, _ in read_jsonl(path, Problems(path))]
    return [f"row {i}" for i in range(count)]


def _preferences(pairs: list[Pair], positions: list[str], problems: Problems) -> list[Preference]:
    with_margin = [i for i, p in enumerate(pairs) if p.extra.get("margin") is not None]
    out = []
    for i, (pair, where) in enumerate(zip(pairs, positions)):
        issues = []
        if pair.label not in (0, 1):
            issues.append("no preference: 'label' is null (need 0 or 1, or chosen/rejected)")
        margin = pair.extra.get("margin")
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))
                                   or not math.isfinite(margin)):
            issues.append(f"'margin' must be a finite number, got {margin!r}")
        elif margin is None and with_margin:
            issues.append(f"no 'margin', but other rows have one (first at "
                          f"{positions[with_margin[0]]}); give every row a margin or none")
        rule_ids = pair.extra.get("rule_ids")
        if rule_ids is not None and (not isinstance(rule_ids, list)
                                     or not all(isinstance(r, str) for r in rule_ids)):
            issues.append(f"'rule_ids' must be a list of strings, got {type_name(rule_ids)}")
        side = pair.extra.get("chosen_side")
        if side not in (None, "a", "b"):
            issues.append(f"'chosen_side' must be \"a\" or \"b\", got {side!r}")
        if issues:
            problems.add(where, issues)
            continue
        chosen, rejected = ((pair.response_a, pair.response_b) if pair.label == 0
                            else (pair.response_b, pair.response_a))
        out.append(Preference(
            id=pair.id, prompt=pair.prompt, chosen=chosen, rejected=rejected,
            margin=None if margin is None else float(margin),
            rule_ids=None if rule_ids is None else tuple(rule_ids), chosen_side=side))
    return out


def uses_chat_template(tokenizer) -> bool:
    """True when `encode` renders through the tokenizer's chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def encode(tokenizer, prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    """Model inputs (input_ids, attention_mask, and token_type_ids where the tokenizer makes
    them) for one response to one prompt, at most `max_length` tokens.

    - A tokenizer with a chat template (chat decoders) renders [user: prompt, assistant:
      response]. When too long, tokens are dropped from the front (after a leading BOS, which
      is kept): a decoder reward model reads its score at the last token, so the end of the
      response must survive.
    - Otherwise (encoders: MiniLM, BERT, DeBERTa, ...) the text pair (prompt, response) with
      the tokenizer's special tokens. When too long, the response keeps as many tokens as fit
      (from its start) and the prompt gets the rest (its end: the turn the response answers).
      The response is what differs between the two sides of a pair; the prompt is shared.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if uses_chat_template(tokenizer):
        return _encode_chat(tokenizer, prompt, response, max_length)
    return _encode_text_pair(tokenizer, prompt, response, max_length)


def _encode_chat(tokenizer, prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    ids = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
    if len(ids) > max_length:
        bos = tokenizer.bos_token_id
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


def pad(rows: list[dict[str, list[int]]], tokenizer) -> dict[str, torch.Tensor]:
    """Stack encoded rows into [len(rows), longest] tensors on the tokenizer's padding side.

    input_ids are padded with the pad token, token_type_ids with the tokenizer's pad type id,
    everything else (attention_mask) with 0.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token (ramo.reward.load_reward_model sets "
                         "one for decoders)")
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


class PreferenceDataset(torch.utils.data.Dataset):
    """Preferences, encoded on access: {"chosen": inputs, "rejected": inputs, "margin"}."""

    def __init__(self, preferences: Sequence[Preference], tokenizer, max_length: int,
                 judge_scores: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.preferences = list(preferences)
        self.tokenizer = tokenizer
        self.max_length = max_length
        # id -> (chosen [R], rejected [R]) judge scores, NaN where a rule was not rated.
        self.judge_scores = judge_scores

    def __len__(self) -> int:
        return len(self.preferences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        p = self.preferences[index]
        item = {"chosen": encode(self.tokenizer, p.prompt, p.chosen, self.max_length),
                "rejected": encode(self.tokenizer, p.prompt, p.rejected, self.max_length),
                "margin": p.margin}
        if self.judge_scores is not None:
            item["judge_scores"] = self.judge_scores[p.id]
        return item


class PreferenceCollator:
    """A batch of B pairs as ONE forward batch of 2B rows: rows 0..B-1 are the chosen
    responses, rows B..2B-1 the rejected ones in the same order, padded together; plus
    `margin` [B] (float32) when the pairs have margins, and `judge_scores` [2B, R] when the
    dataset carries judge ratings.

    One forward instead of two halves the number of passes and, more to the point, puts both
    sides of every pair through the same kernels with the same padding width.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [f["chosen"] for f in features] + [f["rejected"] for f in features]
        batch = pad(rows, self.tokenizer)
        margins = [f.get("margin") for f in features]
        if any(m is not None for m in margins):
            if any(m is None for m in margins):
                raise ValueError("some pairs in the batch have a margin and some do not")
            batch["margin"] = torch.tensor(margins, dtype=torch.float32)
        if "judge_scores" in features[0]:  # [2B, R] in the rows' order, NaN: not rated
            batch["judge_scores"] = torch.stack([f["judge_scores"][0] for f in features]
                                                + [f["judge_scores"][1] for f in features])
        return batch
