"""`ramo label`: preference rows for reward-model training from rule selections (TRL format).

Each selected pair becomes {"id", "prompt", "chosen", "rejected", "margin", "rule_ids",
"chosen_side"}:
chosen is the response with the larger summed score on the pair's selected rules, margin the
(non-negative) difference of the two sums. Ties carry no preference, so they are dropped and
counted, never silently given to one side.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, type=Path, action="append",
                        help="preference pairs (repeatable: e.g. the fully rated pairs and the "
                        "adapter-labeled ones)")
    parser.add_argument("--selections", required=True, type=Path, action="append",
                        help="selections JSONL from `ramo select` or `ramo adapter apply` "
                        "(repeatable)")
    parser.add_argument("--rules", default=None,
                        help="the rule pool; when given, every selected rule id must be in it")
    parser.add_argument("--out", required=True, type=Path, help="labeled JSONL to write")


def label_rows(pairs, selections, rule_ids=None) -> tuple[list[dict], dict]:
    """(rows, counts). Raises ValueError for a selection of an unknown pair or rule."""
    by_id = {p.id: p for p in pairs}
    unknown = [s["id"] for s in selections if s["id"] not in by_id]
    if unknown:
        raise ValueError(f"{len(unknown)} selections name pairs that are not in the pair "
                         f"files: {', '.join(map(repr, unknown[:5]))}")
    if rule_ids is not None:
        pool = set(rule_ids)
        for s in selections:
            bad = [r for r in s["rule_ids"] if r not in pool]
            if bad:
                raise ValueError(f"pair {s['id']!r}: selected rules {bad} are not in the rule pool")
    rows, ties = [], 0
    for s in selections:
        pair = by_id[s["id"]]
        if s["preference"] == 0:
            ties += 1
            continue
        a_wins = s["preference"] == 1
        rows.append({
            "id": pair.id,
            "prompt": pair.prompt,
            "chosen": pair.response_a if a_wins else pair.response_b,
            "rejected": pair.response_b if a_wins else pair.response_a,
            "margin": abs(float(s["margin"])),
            "rule_ids": list(s["rule_ids"]),
            # Which response of the pair won: ratings are stored by side, and a rule-head
            # reward model regressed onto them must know which side each text is.
            "chosen_side": "a" if a_wins else "b",
        })
    counts = {"pairs": len(pairs), "selected": len(selections), "labeled": len(rows),
              "ties_dropped": ties, "unselected": len(pairs) - len(selections)}
    return rows, counts


def run(args: argparse.Namespace) -> int:
    from ramo.io import load_pairs, load_rules
    from ramo.io.atomic import write_jsonl
    from ramo.io.selections import load_selections

    pairs, seen = [], {}
    for path in args.pairs:
        for pair in load_pairs(path):
            if pair.id in seen:
                raise ValueError(f"pair id {pair.id!r} is in both {seen[pair.id]} and {path}")
            seen[pair.id] = path
            pairs.append(pair)
    selections, chosen_in = [], {}
    for path in args.selections:
        for row in load_selections(path):
            if row["id"] in chosen_in:
                raise ValueError(f"pair {row['id']!r} is selected in both {chosen_in[row['id']]} "
                                 f"and {path}")
            chosen_in[row["id"]] = path
            selections.append(row)
    rule_ids = [r.id for r in load_rules(args.rules)] if args.rules else None
    rows, counts = label_rows(pairs, selections, rule_ids)
    write_jsonl(args.out, rows)
    print(f"{counts['labeled']} labeled pairs written to {args.out}; "
          f"{counts['ties_dropped']} ties dropped; {counts['unselected']} pairs had no selection")
    return 0
