"""The label step: labeled pairs for reward-model training from rule selections (TRL format).

Each selected pair becomes a `Preference` {"id", "prompt", "chosen", "rejected", "margin",
"rule_ids", "chosen_side"}: chosen is the response with the larger summed score on the pair's
selected rules, margin the (non-negative) difference of the two sums. Ties carry no
preference, so they are dropped and counted, never silently given to one side.
"""

from __future__ import annotations

from collections.abc import Sequence

from ramo.io import Pair, Preference, Selection


def label(pairs: Sequence[Pair], selections: Sequence[Selection],
          rule_ids: Sequence[str] | None = None) -> tuple[list[Preference], dict]:
    """(labeled pairs, counts), in the selections' order. Raises ValueError for a selection
    of an unknown pair, or (when the pool's rule_ids are given) of an unknown rule."""
    by_id = {p.id: p for p in pairs}
    unknown = [s.id for s in selections if s.id not in by_id]
    if unknown:
        raise ValueError(f"{len(unknown)} selections name pairs that are not in the pair "
                         f"files: {', '.join(map(repr, unknown[:5]))}")
    if rule_ids is not None:
        pool = set(rule_ids)
        for s in selections:
            bad = [r for r in s.rule_ids if r not in pool]
            if bad:
                raise ValueError(f"pair {s.id!r}: selected rules {bad} are not in the rule pool")
    labeled, ties = [], 0
    for s in selections:
        pair = by_id[s.id]
        if s.preference == 0:
            ties += 1
            continue
        a_wins = s.preference == 1
        labeled.append(Preference(
            id=pair.id, prompt=pair.prompt,
            chosen=pair.response_a if a_wins else pair.response_b,
            rejected=pair.response_b if a_wins else pair.response_a,
            margin=abs(float(s.margin)), rule_ids=tuple(s.rule_ids),
            # Which response of the pair won: ratings are stored by side, and a rule-head
            # reward model regressed onto them must know which side each text is.
            chosen_side="a" if a_wins else "b", prompt_messages=pair.prompt_messages))
    counts = {"pairs": len(pairs), "selected": len(selections), "labeled": len(labeled),
              "ties_dropped": ties, "unselected": len(pairs) - len(selections)}
    return labeled, counts
