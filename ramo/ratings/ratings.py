"""What a rating is, in the two shapes ramo uses: a stored row, and a dense view of N pairs.

A judge rates every (pair, side, rule); side 0 is response A, side 1 response B. For each it
gives p_yes, p_no, p_other, a score and a relevance (docs/architecture.md, "Rating with a
judge"). The store holds them as rows (`Rating`, one per key, only the keys rated so far);
the method reads them as [N, 2, R] tensors (`Ratings`), with NaN where a key is not rated,
so a partly rated store and a complete one are read the same way.

Only torch and the standard library: this module is the vocabulary shared by the judge, the
store and its readers, so it depends on none of them.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

# The judge's outputs per (pair, side, rule), in the store's column order.
FIELDS = ("p_yes", "p_no", "p_other", "score", "relevance")
# The row layout shared by the store, its exports and its readers.
COLUMNS = ("pair_id", "side", "rule_id") + FIELDS
# Missing keys a `require_complete` error names.
SHOWN = 5


class Rating(NamedTuple):
    """One stored rating; a plain tuple in COLUMNS order, so it can be passed back to `add`."""

    pair_id: str
    side: int
    rule_id: str
    p_yes: float
    p_no: float
    p_other: float
    score: float
    relevance: float


assert Rating._fields == COLUMNS


def response_key(prompt: str, response: str) -> str:
    """The key a response's ratings are stored under: a hash of its prompt and text.

    A judge's rating of a rule on a response depends on the prompt and the response only, so
    a response that appears in several pairs (several responses per prompt, paired every
    way) is rated once and its ratings are shared. The judge and template are the store's
    own (one store, one judge, one template), so they are not part of the key.
    """
    return _text_key(json.dumps([prompt, response], ensure_ascii=False))


def rule_key(text: str) -> str:
    """The key a rule's text is bound under in a store: its ratings are kept by rule id, so
    the store records which text each id was rated with, and refuses another."""
    return _text_key(text)


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def rule_rows(rules: Sequence) -> list[tuple[str, str]]:
    """(rule_id, `rule_key` of its text) of each rule (anything with id and text)."""
    return [(rule.id, rule_key(rule.text)) for rule in rules]


def response_rows(pair_id: str, side: int, rule_ids: Sequence[str], scores) -> list[Rating]:
    """One response's scores as store rows, one per rule, in the order of rule_ids.

    scores: any object with tensor attributes p_yes, p_no, p_other, score and relevance,
    each [len(rule_ids)] (a JudgeScores, say), of any float dtype, on any device. Values go
    through float64, so a float64 judge's outputs are stored exactly and lower precisions
    widen losslessly.
    """
    rule_ids = list(rule_ids)
    columns = []
    for name in FIELDS:
        values = getattr(scores, name)
        if tuple(values.shape) != (len(rule_ids),):
            # Checked: zip would drop the extra values, or the extra rules, without a word.
            raise ValueError(f"scores.{name} has shape {tuple(values.shape)}; "
                             f"expected ({len(rule_ids)},), one value per rule")
        columns.append(values.detach().double().cpu().tolist())
    return [Rating(pair_id, side, rule_id, *(c[j] for c in columns))
            for j, rule_id in enumerate(rule_ids)]


# eq=False: == on tensors is elementwise, so a generated __eq__ would be ambiguous.
# repr=False: the generated repr would print five whole tensors.
@dataclass(frozen=True, eq=False, repr=False)
class Ratings:
    """Ratings of N pairs on R rules, dense: five float32 tensors [N, 2, R].

    Entry [n, side, r] is pair pair_ids[n], side `side` (0 = response A), rule rule_ids[r];
    it is NaN in every field where that (pair, side, rule) was not rated.
    """

    pair_ids: tuple[str, ...]
    rule_ids: tuple[str, ...]
    p_yes: torch.Tensor
    p_no: torch.Tensor
    p_other: torch.Tensor
    score: torch.Tensor
    relevance: torch.Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "pair_ids", tuple(self.pair_ids))
        object.__setattr__(self, "rule_ids", tuple(self.rule_ids))
        shape = (len(self.pair_ids), 2, len(self.rule_ids))
        for name in FIELDS:
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Ratings.{name} has shape {got}; expected {shape} "
                                 "(pairs, sides, rules)")

    # ---- building ------------------------------------------------------------------------------

    @classmethod
    def _from_flat(cls, pair_ids: Sequence[str], rule_ids: Sequence[str],
                   batches: Iterable[Sequence[Sequence[float]]]) -> Ratings:
        """Build from batches of rows (flat index, *FIELDS values), the index
        (pair * 2 + side) * R + rule, every index at most once in all. The store passes its
        join's rows a fetch at a time, so no list of every row is ever held."""
        shape = (len(pair_ids), 2, len(rule_ids))
        # [FIELDS, size]: one block per field. Each value is rounded once, from the float64
        # it is stored as; the index is exact in float64 (below 2**53).
        fields = torch.full((len(FIELDS), shape[0] * shape[1] * shape[2]), float("nan"),
                            dtype=torch.float32)
        for batch in batches:
            if batch:
                # Through an array of doubles: 1.6x as fast as torch.tensor on the tuples.
                doubles = array.array("d", itertools.chain.from_iterable(batch))
                rows = torch.frombuffer(doubles, dtype=torch.float64).view(len(batch), -1)
                fields[:, rows[:, 0].long()] = rows[:, 1:].T.to(torch.float32)
        return cls(tuple(pair_ids), tuple(rule_ids), *(f.view(shape) for f in fields))

    # ---- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.pair_ids)

    @property
    def valid(self) -> torch.Tensor:
        """bool [N, 2, R]: True where the (pair, side, rule) is rated."""
        return ~torch.isnan(self.score)

    def _missing_keys(self, limit: int | None) -> list[tuple[str, int, str]]:
        flat = torch.nonzero(~self.valid.flatten()).flatten()[:limit].tolist()
        return [_key(self.pair_ids, self.rule_ids, f) for f in flat]

    def require_complete(self, where: str | os.PathLike) -> Ratings:
        """self when every (pair, side, rule) is rated; else ValueError naming the first
        missing keys. where: what the ratings were read from (the store's path), for the
        message."""
        n_missing = int((~self.valid).sum())
        if n_missing:
            raise missing_error(n_missing, self.score.numel(), self._missing_keys(SHOWN), where)
        return self

    def pair_relevance(self) -> torch.Tensor:
        """float32 [N, R]: a pair's relevance for a rule, the mean of its two sides' relevance
        (the judge rates responses, selection ranks rules per pair); NaN when a side is not
        rated."""
        return self.relevance.mean(dim=1)

    def __repr__(self) -> str:
        return (f"Ratings({len(self.pair_ids)} pairs x 2 sides x {len(self.rule_ids)} rules, "
                f"{int(self.valid.sum())} of {self.score.numel()} rated)")


def require_complete_blocks(blocks: Iterable[Ratings],
                            where: str | os.PathLike) -> Iterator[Ratings]:
    """The blocks (consecutive pairs' Ratings, `RatingStore.score_blocks`), each checked as
    `require_complete` checks: at the first block with a rating missing, the rest are read
    too, so the ValueError counts the missing of all of them, as on the whole."""
    blocks, n_total = iter(blocks), 0
    for block in blocks:
        n_missing = int((~block.valid).sum())
        n_total += block.score.numel()
        if n_missing:
            shown = block._missing_keys(SHOWN)
            for rest in blocks:
                n_missing += int((~rest.valid).sum())
                n_total += rest.score.numel()
                if len(shown) < SHOWN:
                    shown += rest._missing_keys(SHOWN - len(shown))
            raise missing_error(n_missing, n_total, shown, where)
        yield block


def missing_error(n_missing: int, n_total: int, shown: Sequence[tuple[str, int, str]],
                  where: str | os.PathLike) -> ValueError:
    """What `require_complete` raises: n_missing of n_total ratings are missing from `where`,
    naming the first keys missing (`shown`, at most SHOWN)."""
    more = f" and {n_missing - len(shown)} more" if n_missing > len(shown) else ""
    return ValueError(f"{n_missing} of {n_total} ratings are missing from {where}: "
                      f"{', '.join(map(str, shown))}{more}")


def _key(pair_ids: Sequence[str], rule_ids: Sequence[str], flat: int) -> tuple[str, int, str]:
    n_rules = len(rule_ids)
    return pair_ids[flat // (2 * n_rules)], flat // n_rules % 2, rule_ids[flat % n_rules]
