"""The eval step: a reward model's accuracy per subset and per section on RewardBench-format
pairs.

Data: rows with `prompt`, `chosen`, `rejected`, `subset` (optionally `id`) as JSONL(.gz),
Parquet or JSON. A pair is correct when the model scores the chosen response strictly
higher than the rejected one; a tie is wrong (a model that gives every response the same
score must not get 50%).

Sections are RewardBench's (chat, chat-hard, safety, reasoning); a section's accuracy is a
weighted mean of the accuracies of its subsets present in the data:
  - weights="count" (default): by the pairs in the data, i.e. the section's correct pairs
    over its pairs; "all" is every pair.
  - weights="official": by RewardBench's official example counts (`EXAMPLE_COUNTS`; a subset
    they do not list weighs its own count), as RewardBench computes its section scores. They
    equal the real counts except math-prm, which RewardBench weighs as 984 pairs (as many as
    its six code subsets together), making reasoning the mean of math and code. "all" is
    then the mean of the sections present, RewardBench's overall score (without its prior
    sets).
Subsets in no section go to "other".

Inputs are formatted as RewardBench formats a classifier reward model's (through the chat
template, re-tokenised: `ramo.tokenization.encode`) and cut at `max_length` tokens, by default
the longest the model takes, at most RewardBench's 2048; the result says how many sequences
were cut.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ramo.checks import optional_positive_integer, positive_integer

SECTIONS: dict[str, tuple[str, ...]] = {
    "chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
             "mt-bench-med"),
    "chat-hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"),
    "reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python",
                  "hep-rust"),
}
# RewardBench's official example counts per subset (its section weights).
EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
    "mt-bench-med": 40, "mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    "refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 154,
    "xstest-should-respond": 250, "donotanswer": 136, "math-prm": 984, "hep-cpp": 164,
    "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
WEIGHTS = ("count", "official")
OTHER = "other"
ALL = "all"
_SECTION_OF = {subset: section for section, subsets in SECTIONS.items() for subset in subsets}


def section_of(subset: str) -> str:
    return _SECTION_OF.get(subset, OTHER)


def load_eval_pairs(path: str | os.PathLike):
    """RewardBench-format pairs (ramo.io.Pair, response_a = chosen, subset in extra).

    Empty responses are allowed (an empty reply is still a reply to score); a row without a
    non-empty string `subset` is an error naming its line (JSONL) or row.
    """
    from ramo.io import load_pairs
    from ramo.io._problems import Problems, type_name

    pairs = load_pairs(path, allow_empty_responses=True)
    if not pairs:
        raise ValueError(f"{os.fspath(path)}: no pairs in the file")
    problems = Problems(path)
    for pair in pairs:
        subset = pair.extra.get("subset")
        if pair.label is None:
            problems.add(pair.where, "'label' is null: which response is chosen?")
        elif "subset" not in pair.extra:
            problems.add(pair.where, "missing column 'subset'")
        elif not _good_subset(subset):
            shown = repr(subset) if isinstance(subset, str) else type_name(subset)
            problems.add(pair.where, f"'subset' must be a non-empty string, got {shown}")
    problems.raise_if_any()
    # response_a is the chosen response from here on (rows in the a/b form may say label 1).
    return [p if p.label == 0 else replace(p, response_a=p.response_b, response_b=p.response_a,
                                           label=0) for p in pairs]


def _good_subset(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


@torch.inference_mode()
def score_responses(model, tokenizer, prompts: Sequence, responses: Sequence[str], *,
                    batch_size: int = 32, max_length: int = 256,
                    progress: bool = False) -> torch.Tensor:
    """The model's score of each (prompt, response): float32 [N] on the CPU.

    Inputs are built by `ramo.tokenization.encode`, the function training uses. Identical inputs
    are scored once, so they get identical scores (a pair whose two responses encode alike is
    an exact tie, whatever batch either would have landed in). Sequences are batched longest
    first, so a batch pads to similar lengths; the result is in the order of the inputs.
    """
    from ramo.models.eval_mode import evaluating
    from ramo.progress import bar as progress_bar
    from ramo.tokenization import check_max_length, encode, pad

    check_max_length(model, max_length)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    positive_integer("batch_size", batch_size)
    unique: dict[tuple, int] = {}
    rows, where = [], []
    for p, r in zip(prompts, responses):
        row = encode(tokenizer, p, r, max_length)
        key = tuple(tuple(v) for v in row.values())
        if key not in unique:
            unique[key] = len(rows)
            rows.append(row)
        where.append(unique[key])
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"]))
    scores = torch.empty(len(rows), dtype=torch.float32)
    device = next(model.parameters()).device
    with evaluating(model), progress_bar(len(rows), progress, unit="seq", desc="scoring") as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in pad([rows[i] for i in chunk], tokenizer).items()}
            logits = model(**batch).logits
            if logits.dim() != 2 or logits.shape[1] != 1:
                raise ValueError(f"a reward model must give one score per sequence; this one "
                                 f"gives logits of shape {tuple(logits.shape)}")
            scores[chunk] = logits[:, 0].float().cpu()
            bar.update(len(chunk))
    return scores[torch.tensor(where, dtype=torch.long)]


def summarize(subsets: Sequence[str], chosen_scores: torch.Tensor,
              rejected_scores: torch.Tensor, weights: str = "count") -> dict:
    """{"subsets": {name: {"accuracy", "n"}}, "sections": {name: {"accuracy", "n"}},
    "weights"} from each pair's subset and scores. Correct means chosen > rejected (ties and
    NaN are wrong); sections are weighted as the module docstring says.

    Subsets are listed section by section in RewardBench's order, then the others in order
    of first appearance; sections with no pairs in the data are left out, "all" is always
    there.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, not {weights!r}")
    if not (len(subsets) == len(chosen_scores) == len(rejected_scores)):
        raise ValueError(f"{len(subsets)} subsets, {len(chosen_scores)} chosen scores and "
                         f"{len(rejected_scores)} rejected scores: they must match")
    correct = (torch.as_tensor(chosen_scores) > torch.as_tensor(rejected_scores)).tolist()
    counts: dict[str, list[int]] = {}  # subset -> [correct, n], in first-appearance order
    for subset, ok in zip(subsets, correct):
        tally = counts.setdefault(subset, [0, 0])
        tally[0] += int(ok)
        tally[1] += 1
    known = [s for section in SECTIONS.values() for s in section if s in counts]
    names = known + [s for s in counts if s not in _SECTION_OF]
    # section -> [sum of weight x accuracy, sum of weights, pairs]
    by_section: dict[str, list[float]] = {}
    for name in names:
        correct, n = counts[name]
        weight = EXAMPLE_COUNTS.get(name, n) if weights == "official" else n
        for section in (section_of(name), ALL):
            tally = by_section.setdefault(section, [0.0, 0, 0])
            tally[0] += weight * correct / n
            tally[1] += weight
            tally[2] += n
    sections = {s: {"accuracy": by_section[s][0] / by_section[s][1], "n": by_section[s][2]}
                for s in [*SECTIONS, OTHER, ALL] if s in by_section}
    if weights == "official":  # RewardBench's overall score: the mean of its sections
        present = [entry["accuracy"] for s, entry in sections.items() if s != ALL]
        sections[ALL]["accuracy"] = sum(present) / len(present)
    return {
        "subsets": {name: {"accuracy": counts[name][0] / counts[name][1], "n": counts[name][1]}
                    for name in names},
        "sections": sections, "weights": weights,
    }


def evaluate(model, data, *, batch_size: int = 32, max_length: int | None = None,
             weights: str = "count", progress: bool = True) -> dict:
    """Accuracy of a reward model per subset and per section (see the module docstring).

    model: a local folder or hub id of an AutoModelForSequenceClassification with one output
        (what `ramo rm train` saves), or a (model, tokenizer) pair, used on its own device.
    data: a RewardBench-format file, or ramo.io.Pair objects with extra["subset"] and
        response_a the chosen response.
    max_length: tokens per (prompt, response); None: the longest the model takes, at most
        2048 (`ramo.tokenization.input_limit`).
    weights: "count" or "official" (RewardBench's section weights; see `summarize`).
    Returns {"subsets": {name: {"accuracy", "n"}}, "sections": {name: {"accuracy", "n"}},
    "weights", "truncation": {"max_length", "sequences", "truncated"}}.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, not {weights!r}")
    optional_positive_integer("max_length", max_length)
    if isinstance(data, (str, os.PathLike)):
        pairs = load_eval_pairs(data)
    else:
        pairs = list(data)
        bad = [p.id for p in pairs if not _good_subset(p.extra.get("subset")) or p.label != 0]
        if bad:
            raise ValueError(f"pair {bad[0]!r}: needs a non-empty extra['subset'] and label 0 "
                             f"(response_a is the chosen response)")
        if not pairs:
            raise ValueError("no pairs to evaluate")
    if isinstance(model, (tuple, list)):
        net, tokenizer = model
    else:
        net, tokenizer = _load(model)
    from ramo.models import RuleHeadRewardModel
    from ramo.tokenization import count_truncated, input_limit

    prompts = [p.model_prompt for p in pairs]
    subsets = [p.extra["subset"] for p in pairs]
    responses = [p.response_a for p in pairs] + [p.response_b for p in pairs]
    if max_length is None:  # a given one is checked against the model by the scoring
        max_length = input_limit(net, tokenizer)
    truncation = {"max_length": max_length, "sequences": len(responses),
                  "truncated": count_truncated(tokenizer, prompts + prompts, responses,
                                               max_length)}
    if isinstance(net, RuleHeadRewardModel):
        # A rule-head model compares a pair as it was trained: the sums over the k heads on
        # which the two responses differ most (margin > 0: chosen wins; a tie is wrong).
        margin = net.compare(tokenizer, prompts, [p.response_a for p in pairs],
                             [p.response_b for p in pairs], batch_size=batch_size,
                             max_length=max_length).margin
        result = summarize(subsets, margin, torch.zeros_like(margin), weights)
    else:
        scores = score_responses(net, tokenizer, prompts + prompts, responses,
                                 batch_size=batch_size, max_length=max_length,
                                 progress=progress)
        n = len(pairs)
        result = summarize(subsets, scores[:n], scores[n:], weights)
    return {**result, "truncation": truncation}


def _load(name: str | os.PathLike):
    from ramo.device import default_device
    from ramo.models import load_any_reward_model

    net, tokenizer = load_any_reward_model(name)
    return net.to(default_device()).eval(), tokenizer


def to_markdown(result: dict) -> str:
    """A subsets table and a sections table, accuracies in percent, and what was cut."""
    lines = ["| subset | section | n | accuracy (%) |", "|---|---|---:|---:|"]
    for name, entry in result["subsets"].items():
        lines.append(f"| {name} | {section_of(name)} | {entry['n']} | "
                     f"{100 * entry['accuracy']:.1f} |")
    official = result.get("weights") == "official"
    weighted = (" (RewardBench's official weights; all: the mean of the sections)"
                if official else "")
    lines += ["", f"| section{weighted} | n | accuracy (%) |", "|---|---:|---:|"]
    for name, entry in result["sections"].items():
        lines.append(f"| {name} | {entry['n']} | {100 * entry['accuracy']:.1f} |")
    cut = result.get("truncation")
    if cut:
        lines += ["", f"{cut['truncated']} of {cut['sequences']} sequences cut at "
                  f"{cut['max_length']} tokens"]
    return "\n".join(lines) + "\n"


def write_result(result: dict, json_path: str | os.PathLike | None = None,
                 markdown_path: str | os.PathLike | None = None, **about) -> None:
    """The result as JSON ({**about, **result}) and its tables as markdown, atomically;
    either path may be None."""
    from ramo.io.atomic import write_json, write_text

    check_output_paths(json_path, markdown_path)
    if json_path is not None:
        write_json(json_path, {**about, **result})
    if markdown_path is not None:
        write_text(markdown_path, to_markdown(result))


def check_output_paths(*paths: str | os.PathLike | None) -> None:
    """Before the work: a result path must not be a folder, and no two may be the same file
    (the second write would replace the first)."""
    from ramo.io.atomic import same_file

    given = [Path(target) for target in paths if target is not None]
    for target in given:
        if target.is_dir():
            raise ValueError(f"{target}: is a folder; give a file name")
    for i, first in enumerate(given):
        for second in given[i + 1:]:
            if same_file(first, second):
                raise ValueError(f"{first} and {second} are the same file: the JSON result "
                                 "and the markdown tables need a file each")


