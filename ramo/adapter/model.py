"""The Rule Adapter: a multi-label sequence classifier over the R rules of a pool.

Trained on pairs whose full max-discrepancy selection is known (train.py), it predicts a new
pair's k rules from the pair's text alone, so that the judge rates k rules per side instead
of R (apply.py). A saved adapter is a transformers folder (model and tokenizer) plus
`ramo_adapter.json`, which records the rule ids in label order, the pool's fingerprint, k and
max_length: output j means rule_ids[j], so a pool given at prediction time must be exactly
the training pool, or every prediction would silently name another rule.

transformers is imported inside functions: `ramo --help` imports this package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ramo.checks import positive_integer
from ramo.io import as_pairs
from ramo.ops import select_rules

ADAPTER_FILE = "ramo_adapter.json"
FORMAT = "ramo-adapter-v1"
# Names the way a pair becomes text (pair_texts). A change of that function changes this tag,
# so an adapter trained on one text format is never fed another.
TEXT_FORMAT = "prompt-end|A-start|B-start-v1"
_LABEL_A, _LABEL_B = "Response A: ", "\nResponse B: "


# ---- the pair's text ---------------------------------------------------------------------------

def pair_texts(tokenizer, pairs: Sequence, max_length: int) -> tuple[list[str], list[str]]:
    """The text pair the adapter reads for each pair: (prompt, "Response A: a\\nResponse B: b").

    Used for training and for prediction alike. A text pair lets the backbone tell the
    question from the answers (segment ids, [SEP]). When the whole does not fit in
    max_length tokens, each of the three parts is cut to a fair share of the room (water
    filling: a part shorter than its share keeps all of it and leaves the rest to the
    others), so no part is dropped because another is long. Responses keep their starts,
    where a refusal or a compliance shows; the prompt keeps its end, which in a multi-turn
    conversation is the turn both responses answer. Cuts fall at token boundaries of the
    backbone's own tokenizer (it must be a fast tokenizer, for the character offsets).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("the Rule Adapter needs a fast (Rust) tokenizer: it cuts texts at "
                         "token offsets, which slow tokenizers do not give")
    pairs = as_pairs(pairs)
    if not pairs:
        return [], []
    labels = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"])
                 for t in (_LABEL_A, _LABEL_B))
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=True) - labels
    if budget < 3:
        raise ValueError(f"max_length = {max_length} leaves no room for the prompt and both "
                         f"responses (the special tokens and labels take {max_length - budget}); "
                         f"use at least {max_length - budget + 3}")
    parts = [[p.prompt for p in pairs], [p.response_a for p in pairs],
             [p.response_b for p in pairs]]
    # verbose=False: these are measurements, longer than the model takes on purpose.
    offsets = [tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                         verbose=False)["offset_mapping"] for texts in parts]
    firsts, seconds = [], []
    for n in range(len(pairs)):
        spans = [offsets[part][n] for part in range(3)]
        shares = _fair_shares([len(s) for s in spans], budget)
        prompt = _keep_end(parts[0][n], spans[0], shares[0])
        a = _keep_start(parts[1][n], spans[1], shares[1])
        b = _keep_start(parts[2][n], spans[2], shares[2])
        firsts.append(prompt)
        seconds.append(f"{_LABEL_A}{a}{_LABEL_B}{b}")
    return firsts, seconds


def count_cut(tokenizer, pairs: Sequence, max_length: int) -> int:
    """How many pairs `pair_texts` cuts to fit max_length."""
    pairs = as_pairs(pairs)
    firsts, seconds = pair_texts(tokenizer, pairs, max_length)
    return sum(first != p.prompt or second != f"{_LABEL_A}{p.response_a}{_LABEL_B}{p.response_b}"
               for p, first, second in zip(pairs, firsts, seconds))


def encode_pairs(tokenizer, pairs: Sequence, max_length: int, **kwargs):
    """Token ids of `pair_texts`, at most max_length each. Re-tokenising a cut text can give
    a token more than counted (a label's tokens can merge with a neighbour's); the tail of
    response B, never the prompt, absorbs that."""
    firsts, seconds = pair_texts(tokenizer, pairs, max_length)
    return tokenizer(firsts, seconds, truncation="only_second", max_length=max_length, **kwargs)


def _fair_shares(lengths: list[int], budget: int) -> list[int]:
    shares = [0] * len(lengths)
    left = budget
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for done, i in enumerate(order):  # shortest first: what they leave goes to the longer
        shares[i] = min(lengths[i], left // (len(lengths) - done))
        left -= shares[i]
    return shares


def _keep_start(text: str, spans: list[tuple[int, int]], keep: int) -> str:
    if keep >= len(spans):
        return text
    return text[:spans[keep - 1][1]] if keep > 0 else ""


def _keep_end(text: str, spans: list[tuple[int, int]], keep: int) -> str:
    if keep >= len(spans):
        return text
    return text[spans[len(spans) - keep][0]:] if keep > 0 else ""


# ---- rule ids --------------------------------------------------------------------------------

def rule_indices(pair_ids: Sequence[str], targets: Sequence[Sequence[str]],
                 rule_ids: Sequence[str], *, source: str = "targets") -> list[list[int]]:
    """Each pair's rule ids as indices into rule_ids, in their order.

    Raises ValueError naming the pairs (the first few) with an unknown or repeated rule id.
    """
    from ramo.io._problems import Problems

    if len(targets) != len(pair_ids):
        raise ValueError(f"{source}: {len(targets)} rule lists for {len(pair_ids)} pairs")
    index = {rid: j for j, rid in enumerate(rule_ids)}
    out, problems = [], Problems(source)
    for pair_id, target in zip(pair_ids, targets):
        where = f"pair {pair_id!r}"
        if isinstance(target, str) or not isinstance(target, Sequence):
            problems.add(where, f"expected a list of rule ids, got {type(target).__name__}")
            continue
        unknown = [rid for rid in target if rid not in index]
        repeated = sorted({rid for rid in target if list(target).count(rid) > 1})
        if unknown:
            problems.add(where, f"unknown rule id(s) {', '.join(map(repr, unknown))} (not in "
                                f"the pool of {len(rule_ids)} rules)")
        elif repeated:
            problems.add(where, f"rule id(s) listed twice: {', '.join(map(repr, repeated))}")
        else:
            out.append([index[rid] for rid in target])
    problems.raise_if_any()
    return out


def padded(indices: list[list[int]], width: int | None = None) -> torch.Tensor:
    """int64 [N, width] with -1 after each row's indices (width: the longest row's length)."""
    width = max((len(row) for row in indices), default=0) if width is None else width
    out = torch.full((len(indices), width), -1, dtype=torch.int64)
    for n, row in enumerate(indices):
        out[n, :len(row)] = torch.tensor(row, dtype=torch.int64)
    return out


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """int64 [N, k]: each row's k largest logits, best first; ties: the lower rule first.

    Through `select_rules` with zero scores and the logits as relevance, so that the order,
    ties included, is the one every selection in ramo has.
    """
    zeros = torch.zeros_like(logits)
    return select_rules(zeros, zeros, relevance=logits, k=k, discrepancy_weight=0.0).indices


# ---- the adapter -----------------------------------------------------------------------------

class RuleAdapter:
    """A trained Rule Adapter: R logits per pair, one per rule of its pool, and their top k.

    model: an AutoModelForSequenceClassification with num_labels = len(rule_ids).
    rules_fingerprint: `ramo.io.rules_fingerprint` of the training pool; None skips the
    text check in `check_rules` (ids are always checked).
    """

    def __init__(self, model, tokenizer, *, rule_ids: Sequence[str], k: int, max_length: int,
                 rules_fingerprint: str | None = None, info: dict | None = None):
        rule_ids = list(rule_ids)
        if not rule_ids or len(set(rule_ids)) != len(rule_ids):
            raise ValueError("rule_ids must be a non-empty list of distinct ids")
        labels = getattr(model.config, "num_labels", None)
        if labels != len(rule_ids):
            raise ValueError(f"the model has {labels} outputs but there are {len(rule_ids)} "
                             "rule ids: one output per rule is needed")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.rule_ids = rule_ids
        self.rules_fingerprint = rules_fingerprint
        self.max_length = int(max_length)
        self.info = dict(info or {})
        self.k = self.resolve_k(k)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> RuleAdapter:
        """Load an adapter folder written by `train_adapter`."""
        from transformers import AutoModelForSequenceClassification

        from ramo.tokenization import load_tokenizer

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no Rule Adapter folder at {path}")
        meta_path = path / ADAPTER_FILE
        if not meta_path.is_file():
            raise ValueError(f"{path} is not a Rule Adapter folder: it has no {ADAPTER_FILE}")
        meta = _read_meta(meta_path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, **({"dtype": dtype} if dtype is not None else {}))
        id2label = [model.config.id2label.get(j) for j in range(model.config.num_labels)]
        if id2label != meta["rule_ids"]:
            raise ValueError(f"{path}: the model's labels (config.json id2label) are not the "
                             f"rule ids of {ADAPTER_FILE}")
        return cls(model.to(device), load_tokenizer(path),
                   rule_ids=meta["rule_ids"], k=meta["k"], max_length=meta["max_length"],
                   rules_fingerprint=meta["rules_fingerprint"], info=meta)

    @property
    def num_rules(self) -> int:
        return len(self.rule_ids)

    def resolve_k(self, k: int | None) -> int:
        """k, or the adapter's own when None; ValueError unless 1 <= k <= R."""
        k = self.k if k is None else k
        positive_integer("k", k)
        if k > self.num_rules:
            raise ValueError(f"k = {k} is more than the adapter's R = {self.num_rules} rules")
        return k

    def check_rules(self, rules: Sequence) -> None:
        """ValueError unless `rules` is the adapter's pool: the same ids, in the same order,
        with the same texts (when the adapter knows its pool's fingerprint)."""
        from ramo.io import rules_fingerprint

        ids = [r.id for r in rules]
        if ids != self.rule_ids:
            given, own = set(ids), set(self.rule_ids)
            missing = [i for i in self.rule_ids if i not in given]
            extra = [i for i in ids if i not in own]
            if missing or extra:
                what = "; ".join(part for part in (
                    f"missing {_some(missing)}" if missing else "",
                    f"not in the adapter {_some(extra)}" if extra else "") if part)
            else:
                what = "the same ids in another order (output j is the adapter's j-th rule)"
            raise ValueError(f"the rule pool ({len(ids)} rules) is not the adapter's "
                             f"({self.num_rules} rules): {what}")
        if self.rules_fingerprint and rules_fingerprint(list(rules)) != self.rules_fingerprint:
            raise ValueError("the rule pool has the adapter's rule ids but other texts (its "
                             "fingerprint differs from the one the adapter was trained on)")

    @torch.inference_mode()
    def logits(self, pairs: Sequence, batch_size: int = 32) -> torch.Tensor:
        """float32 [N, R] on the CPU: one logit per (pair, rule)."""
        positive_integer("batch_size", batch_size)
        out = torch.empty(len(pairs), self.num_rules, dtype=torch.float32)
        if not len(pairs):  # before the tokenizer, which refuses an empty batch
            return out
        encoded = encode_pairs(self.tokenizer, pairs, self.max_length)
        device = next(self.model.parameters()).device
        keys = list(encoded.keys())
        # Batches of similar length: little padding, and the same logits (padding is masked).
        order = sorted(range(len(pairs)), key=lambda n: len(encoded["input_ids"][n]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = self.tokenizer.pad([{key: encoded[key][n] for key in keys} for n in rows],
                                       return_tensors="pt").to(device)
            out[rows] = self.model(**batch).logits.float().cpu()
        return out

    def predict(self, pairs: Sequence, k: int | None = None, batch_size: int = 32) -> torch.Tensor:
        """int64 [N, k]: each pair's k rules (indices into rule_ids), best first; equal
        logits: the lower index first."""
        k = self.resolve_k(k)
        return top_k(self.logits(pairs, batch_size), k)


def _some(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(map(repr, ids[:limit]))
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (format: "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("text_format") != TEXT_FORMAT:
        raise ValueError(f"{path}: the adapter reads pairs as {meta.get('text_format')!r}; "
                         f"this ramo writes them as {TEXT_FORMAT!r}")
    rule_ids = meta.get("rule_ids")
    if (not isinstance(rule_ids, list) or not rule_ids
            or not all(isinstance(r, str) and r for r in rule_ids)):
        raise ValueError(f"{path}: 'rule_ids' must be a non-empty list of strings")
    for name in ("k", "max_length"):
        positive_integer(f"{path}: {name!r}", meta.get(name))
    if not isinstance(meta.get("rules_fingerprint"), str):
        raise ValueError(f"{path}: 'rules_fingerprint' must be a string")
    return meta
