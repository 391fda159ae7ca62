"""How relevant each rule is to each pair: the regulariser of max-discrepancy selection.

Two sources:
  - "judge": the judge's own answer. A response's relevance for a rule is
    (p_yes + p_no) / (p_yes + p_no + p_irrelevant); a pair's is the mean of its two sides
    (`ramo.ratings.Ratings.pair_relevance`). Free once the pair is rated, since every rating
    carries it.
  - "embedding": the cosine of the prompt's and the rule's sentence embeddings (default
    encoder: the offline all-MiniLM-L6-v2). Needs no judge, so it can rank rules before any
    rating.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

SOURCES = ("judge", "embedding", "none")


def embedding_relevance(prompts: Sequence[str], rule_texts: Sequence[str], *,
                        encoder: str | os.PathLike = "default") -> torch.Tensor:
    """[N, R] float32: cosine similarity of each prompt with each rule text."""
    from ramo.encoders import embed, load_encoder

    if not rule_texts:
        raise ValueError("embedding relevance needs at least one rule")
    model, tokenizer = load_encoder(encoder)
    rules = embed(list(rule_texts), model, tokenizer)
    prompts = embed(list(prompts), model, tokenizer)
    return prompts @ rules.T
