"""`ramo explain`: for a pair, the rules a rule-head reward model selects and each side's scores.

For each pair the model's heads score both responses on every rule; the k rules on which the
two differ most are selected, as in training, and their per-rule scores, the two rewards
(sums over the selected rules), the margin and the preference are printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path,
                        help="a rule-head reward model (`ramo rm train --heads rules`)")
    parser.add_argument("--pairs", required=True, type=Path,
                        help="pairs: JSONL(.gz), Parquet or JSON (response_a/response_b or "
                        "chosen/rejected)")
    parser.add_argument("--id", action="append", default=[], dest="ids",
                        help="pair id to explain (repeatable; default: the first 3 pairs)")
    parser.add_argument("--rules", default=None,
                        help="the rule pool, to print each rule's text ('default' for ramo's)")
    parser.add_argument("--max-length", type=int, default=256,
                        help="tokens per prompt + response, as in training (default 256)")


def explain(model, tokenizer, pairs, rule_text: dict[str, str] | None = None, *,
            max_length: int = 256) -> str:
    selection = model.compare(tokenizer, [p.prompt for p in pairs],
                              [p.response_a for p in pairs], [p.response_b for p in pairs],
                              max_length=max_length)
    blocks = []
    for n, pair in enumerate(pairs):
        preference = {1: "A is better", -1: "B is better", 0: "tie"}[int(selection.preference[n])]
        lines = [f"pair {pair.id}: {_short(pair.prompt)}",
                 f"  A: {_short(pair.response_a)}", f"  B: {_short(pair.response_b)}",
                 f"  selected {model.k} of {len(model.rule_ids)} rules:",
                 f"  {'rule':>8}  {'score A':>8}  {'score B':>8}  {'|A-B|':>7}  text"]
        for j in selection.indices[n].tolist():
            if j < 0:
                continue
            a, b = float(selection.scores_a[n, j]), float(selection.scores_b[n, j])
            rid = model.rule_ids[j]
            lines.append(f"  {rid:>8}  {a:8.4f}  {b:8.4f}  {abs(a - b):7.4f}  "
                         f"{_short((rule_text or {}).get(rid, ''), 70)}")
        lines.append(f"  reward A {float(selection.reward_a[n]):.4f}, reward B "
                     f"{float(selection.reward_b[n]):.4f}, margin {float(selection.margin[n]):.4f}: "
                     f"{preference}" + _known(pair))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _known(pair) -> str:
    if pair.label is None:
        return ""
    return f" (the data says {'A' if pair.label == 0 else 'B'})"


def _short(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def run(args: argparse.Namespace) -> int:
    from ramo.io import load_pairs, load_rules
    from ramo.models import RuleHeadRewardModel

    pairs = load_pairs(args.pairs)
    if args.ids:
        by_id = {p.id: p for p in pairs}
        missing = [i for i in args.ids if i not in by_id]
        if missing:
            raise ValueError(f"no pair with id {', '.join(map(repr, missing))} in {args.pairs}")
        pairs = [by_id[i] for i in args.ids]
    else:
        pairs = pairs[:3]
    rule_text = {r.id: r.text for r in load_rules(args.rules)} if args.rules else None
    model, tokenizer = RuleHeadRewardModel.from_pretrained(args.model)
    print(explain(model, tokenizer, pairs, rule_text, max_length=args.max_length))
    return 0
