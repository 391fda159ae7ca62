"""Explaining a rule-head reward model (`ramo explain`): for a pair, the rules it selects and
each side's scores.

For each pair the model's heads score both responses on every rule; the k rules on which the
two differ most are selected, as in training, and their per-rule scores, the two rewards
(sums over the selected rules), the margin and the preference are printed.
"""

from __future__ import annotations


def explain(model, tokenizer, pairs, rule_text: dict[str, str] | None = None, *,
            max_length: int = 256) -> str:
    selection = model.compare(tokenizer, [p.model_prompt for p in pairs],
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
