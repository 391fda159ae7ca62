"""`ramo select`: per pair, the k rules of largest discrepancy (plus relevance), and the label they give.

Reads the judge's ratings of every pair on every rule from a ratings store (`ramo rate`),
runs the fused `select_rules` op over all pairs at once and writes one JSON object per pair:
{"id", "rule_ids", "criterion", "reward_a", "reward_b", "margin", "preference"}
(preference 1: response A is better, -1: B is, 0: a tie).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ramo.relevance import SOURCES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, type=Path, help="the rated preference pairs")
    parser.add_argument("--rules", required=True,
                        help="the rule pool they were rated on, or 'default' for ramo's pool")
    parser.add_argument("--ratings", required=True, type=Path,
                        help="ratings store written by `ramo rate` (every pair on every rule)")
    parser.add_argument("--out", required=True, type=Path, help="selections JSONL to write")
    add_selection_arguments(parser)


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection settings; `ramo pipeline` shares them."""
    parser.add_argument("-k", "--k", type=int, default=5, help="rules selected per pair (default 5)")
    parser.add_argument("--relevance", default="judge", choices=SOURCES,
                        help="relevance regulariser: the judge's (default), prompt-rule "
                        "embedding cosine, or none")
    parser.add_argument("--encoder", default="default",
                        help="sentence encoder for --relevance embedding (default: MiniLM)")
    parser.add_argument("--discrepancy-weight", type=float, default=0.5,
                        help="weight of |s(A) - s(B)| in the criterion (default 0.5)")
    parser.add_argument("--relevance-weight", type=float, default=1.0,
                        help="weight of the relevance in the criterion (default 1.0)")


def select_pairs(pairs, rules, store, *, k: int = 5, relevance: str = "judge",
                 encoder: str = "default", discrepancy_weight: float = 0.5,
                 relevance_weight: float = 1.0):
    """(RuleSelection over all pairs, scores [N, 2, R]) from a store's ratings."""
    from ramo.ops import select_rules
    from ramo.relevance import embedding_relevance, pair_relevance

    if relevance not in SOURCES:
        raise ValueError(f"relevance must be one of {SOURCES}, not {relevance!r}")
    check_k(k, rules)
    scores, per_side = store.to_tensors([p.id for p in pairs], [r.id for r in rules])
    rel = None
    if relevance == "judge":
        rel = pair_relevance(per_side)
    elif relevance == "embedding":
        rel = embedding_relevance([p.prompt for p in pairs], [r.text for r in rules],
                                  encoder=encoder)
    selection = select_rules(scores[:, 0], scores[:, 1], rel, k=k,
                             discrepancy_weight=discrepancy_weight,
                             relevance_weight=relevance_weight)
    return selection, scores


def check_k(k, rules, name: str = "k") -> None:
    """k against the pool, before anything is rated or written."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(rules):
        raise ValueError(f"{name} must be an integer from 1 to the pool's {len(rules)} rules, "
                         f"got {k!r}")


def label_agreement(pairs, preference) -> dict | None:
    """How often a rule label (1: A better, -1: B better, 0: tie) agrees with the pair's own
    label (0: A better, 1: B better); ties are disagreements. None when no pair has one."""
    known = [(p.label, int(v)) for p, v in zip(pairs, list(preference)) if p.label is not None]
    if not known:
        return None
    agree = sum((label == 0 and v == 1) or (label == 1 and v == -1) for label, v in known)
    return {"agree": agree, "n": len(known), "rate": agree / len(known)}


def summary(pairs, preference: torch.Tensor) -> str:
    """Counts of A / B / tie, and agreement with the pairs' own labels where they have any."""
    n = len(pairs)
    a, b = int((preference == 1).sum()), int((preference == -1).sum())
    line = f"{n} pairs: A better {a}, B better {b}, ties {n - a - b}"
    agreement = label_agreement(pairs, preference.tolist())
    if agreement:
        line += (f"; agrees with the data's own label on {agreement['agree']} of "
                 f"{agreement['n']} ({100.0 * agreement['rate']:.1f}%, ties count as "
                 "disagreement)")
    return line


def run(args: argparse.Namespace) -> int:
    from ramo.io import load_pairs, load_rules
    from ramo.io.atomic import write_jsonl
    from ramo.io.selections import selection_rows
    from ramo.ratings import RatingStore

    pairs = load_pairs(args.pairs)
    rules = load_rules(args.rules)
    with RatingStore.open_existing(args.ratings) as store:
        selection, _ = select_pairs(
            pairs, rules, store, k=args.k, relevance=args.relevance, encoder=args.encoder,
            discrepancy_weight=args.discrepancy_weight, relevance_weight=args.relevance_weight)
    write_jsonl(args.out, selection_rows([p.id for p in pairs], [r.id for r in rules], selection))
    print(summary(pairs, selection.preference))
    print(f"wrote {args.out}")
    return 0
