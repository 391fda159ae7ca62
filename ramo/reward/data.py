"""The dataset and collator that feed labeled pairs (`ramo.io.Preference`) to the reward
trainers, both sides of a batch of pairs in one forward pass. The (prompt, response) ->
inputs encoding is ramo.tokenization's, shared with evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ramo.io.preferences import Preference
from ramo.tokenization import encode, pad


class PreferenceDataset(torch.utils.data.Dataset):
    """Preferences, encoded on access: {"chosen": inputs, "rejected": inputs, "margin"}."""

    def __init__(self, preferences: Sequence[Preference], tokenizer, max_length: int,
                 rated_scores: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.preferences = list(preferences)
        self.tokenizer = tokenizer
        self.max_length = max_length
        # id -> (chosen [R], rejected [R]) judge scores, NaN where a rule was not rated.
        self.rated_scores = rated_scores

    def __len__(self) -> int:
        return len(self.preferences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        p = self.preferences[index]
        item = {"chosen": encode(self.tokenizer, p.model_prompt, p.chosen, self.max_length),
                "rejected": encode(self.tokenizer, p.model_prompt, p.rejected, self.max_length),
                "margin": p.margin}
        if self.rated_scores is not None:
            item["rated_scores"] = self.rated_scores[p.id]
        return item


class PreferenceCollator:
    """A batch of B pairs as ONE forward batch of 2B rows: rows 0..B-1 are the chosen
    responses, rows B..2B-1 the rejected ones in the same order, padded together; plus
    `margin` [B] (float32) when the pairs have margins, and `rated_scores` [2B, R] when the
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
        if "rated_scores" in features[0]:  # [2B, R] in the rows' order, NaN: not rated
            batch["rated_scores"] = torch.stack([f["rated_scores"][0] for f in features]
                                                + [f["rated_scores"][1] for f in features])
        return batch
