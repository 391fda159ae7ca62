"""The adapter-train step: train a Rule Adapter on pairs and their max-discrepancy selections.

The adapter learns, from a pair's text alone, which k rules the full selection (top k of R
on judge ratings of all R rules) chose for it: multi-hot targets, one sigmoid output per
rule, binary cross-entropy (the method's Rule Adapter).

`train_adapter` trains and saves; `adapter_step` is the whole step as the command and the
pipeline run it: it holds out a share of the pairs, trains on the rest and evaluates the
adapter on the held-out ones (ramo/adapter/evaluate.py).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ramo.adapter.model import (ADAPTER_FILE, FORMAT, TEXT_FORMAT, count_cut, encode_pairs,
                                rule_indices)
from ramo.io import Pair, Rule, as_pairs
from ramo.io.atomic import check_output_dir
from ramo.io.selections import Selection
from ramo.models.lora import check_rank

DEFAULT_HOLDOUT = 0.2  # the share held out when there are ratings to evaluate on


def train_adapter(pairs: Sequence, targets: Sequence[Sequence[str]], rules: Sequence,
                  out_dir: str | Path, *, backbone: str = "default", k: int = 5,
                  epochs: float = 5, learning_rate: float = 1e-4,
                  batch_size: int = 16, max_length: int = 256, seed: int = 0,
                  lora: int | None = None, progress: bool = True) -> dict:
    """Train a Rule Adapter and save it to out_dir (atomically: all of it, or nothing).

    pairs: `Pair`s (or dicts with id, prompt, response_a, response_b). targets: each pair's
    selected rule ids (a selections file's `rule_ids`), in pair order. rules: the pool; the
    adapter has one output per rule, in pool order. backbone: an encoder folder or hub id,
    or "default" (the embedded MiniLM); its head is replaced by one of R outputs.
    k: how many rules the adapter picks by default at prediction time.
    lora: None (full fine-tuning) or a LoRA rank (`ramo.models.lora`: adapters on the
    backbone's linear layers, the new head in full, merged before saving).

    The defaults (5 epochs at 1e-4) are sized for MiniLM on about 1K pairs, not tuned.
    Everything is checked before the backbone is loaded; an unknown rule id in targets is a
    ValueError naming the pair. The folder gets the model, its tokenizer and ramo_adapter.json
    (k, rule ids, the pool's fingerprint, max_length, the loss history). Returns the loss
    history, the final mean training loss, the step count and timings in seconds.
    """
    from ramo.io import rules_fingerprint

    started = time.perf_counter()
    rules = list(rules)
    check_training_options(k=k, epochs=epochs, learning_rate=learning_rate,
                           batch_size=batch_size, max_length=max_length, n_rules=len(rules))
    check_rank(lora)
    check_output_dir(out_dir, {"backbone": backbone}, marker=ADAPTER_FILE)
    pairs = as_pairs(pairs)
    pair_ids = [p.id for p in pairs]
    if not pair_ids:
        raise ValueError("no pairs to train on")
    rule_ids = [r.id for r in rules]
    if len(set(rule_ids)) != len(rule_ids):
        raise ValueError("the rule pool has duplicate ids")
    multi_hot = torch.zeros(len(pair_ids), len(rules))
    for n, row in enumerate(rule_indices(pair_ids, targets, rule_ids)):
        multi_hot[n, row] = 1.0

    from transformers import (AutoModelForSequenceClassification, Trainer, TrainingArguments,
                              set_seed)

    from ramo.encoders import resolve
    from ramo.io.atomic import atomic_dir, write_json
    from ramo.models.lora import add_lora, merge_lora
    from ramo.progress import show_loss_on_bar
    from ramo.tokenization import check_max_length, load_tokenizer

    set_seed(seed)  # the new head's initial weights come from here
    source = resolve(backbone)
    tokenizer = load_tokenizer(source)  # a decoder's pads with its EOS token
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(rules), problem_type="multi_label_classification",
        id2label=dict(enumerate(rule_ids)), label2id={rid: j for j, rid in enumerate(rule_ids)},
        ignore_mismatched_sizes=True)  # a classifier backbone with another label count: new head
    if model.config.pad_token_id is None:  # a decoder classifies at its last real token
        model.config.pad_token_id = tokenizer.pad_token_id
    check_max_length(model, max_length)
    if lora is not None:
        model = add_lora(model, lora, classifier=True)
    loaded = time.perf_counter()

    encoded = encode_pairs(tokenizer, pairs, max_length)
    truncation = {"max_length": max_length, "pairs": len(pairs),
                  "truncated": count_cut(tokenizer, pairs, max_length)}
    features = [{**{key: encoded[key][n] for key in encoded.keys()}, "labels": multi_hot[n]}
                for n in range(len(pair_ids))]
    tokenized = time.perf_counter()

    def collate(batch: list[dict]) -> dict:
        inputs = tokenizer.pad([{key: f[key] for key in f if key != "labels"} for f in batch],
                               return_tensors="pt")
        return {**inputs, "labels": torch.stack([f["labels"] for f in batch])}

    with tempfile.TemporaryDirectory(prefix="ramo-adapter-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch_size,
            num_train_epochs=epochs, learning_rate=learning_rate, seed=seed, data_seed=seed,
            report_to="none", save_strategy="no", logging_strategy="steps", logging_steps=1,
            disable_tqdm=not progress, dataloader_pin_memory=torch.cuda.is_available())
        trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collate)
        show_loss_on_bar(trainer, progress)  # every step is logged, for the loss history
        result = trainer.train()
    trained = time.perf_counter()

    history = [{"step": e["step"], "epoch": e["epoch"], "loss": e["loss"]}
               for e in trainer.state.log_history if "loss" in e]
    training = {"pairs": len(pair_ids), "epochs": epochs, "learning_rate": learning_rate,
                "batch_size": batch_size, "seed": seed, "lora": lora,
                "steps": trainer.state.global_step, "train_loss": result.training_loss,
                "truncation": truncation}
    meta = {"format": FORMAT, "text_format": TEXT_FORMAT, "k": k, "rule_ids": rule_ids,
            "rules_fingerprint": rules_fingerprint(rules), "max_length": max_length,
            "backbone": str(backbone), "training": training, "loss_history": history}
    model = trainer.model if lora is None else merge_lora(trainer.model)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / ADAPTER_FILE, meta)
    saved = time.perf_counter()
    return {"loss_history": history, "train_loss": result.training_loss,
            "steps": trainer.state.global_step, "pairs": len(pair_ids), "rules": len(rules),
            "truncation": truncation,
            "timings": {"load_s": loaded - started, "tokenize_s": tokenized - loaded,
                        "train_s": trained - tokenized, "save_s": saved - trained,
                        "total_s": saved - started}}


def check_training_options(*, k, epochs, learning_rate, batch_size, max_length,
                           n_rules) -> None:
    """The adapter's training options (ValueError naming the option): by `train_adapter`,
    and by the pipeline before its first step writes anything."""
    if n_rules == 0:
        raise ValueError("the rule pool is empty")
    from ramo.checks import positive_integer, positive_number

    for name, value in (("k", k), ("batch_size", batch_size), ("max_length", max_length)):
        positive_integer(name, value)
    if k > n_rules:
        raise ValueError(f"k = {k} is more than the pool's R = {n_rules} rules")
    positive_number("epochs", epochs)
    positive_number("learning_rate", learning_rate)


def check_holdout(holdout) -> None:
    """The share held out must be in [0, 1): a run that holds out every pair trains nothing."""
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout!r}")


def split_holdout(pairs: Sequence[Pair], holdout: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, held-out pairs), each in the given order: a seeded shuffle picks
    round(holdout x N) pairs (at least one when holdout > 0) to hold out, so reruns and
    resumes hold out the same ones."""
    check_holdout(holdout)
    if holdout == 0:
        return list(pairs), []
    count = max(1, round(holdout * len(pairs)))
    if count >= len(pairs):
        raise ValueError(f"holdout {holdout} of {len(pairs)} pairs leaves none to train on")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    out = set(order[:count])
    return ([p for n, p in enumerate(pairs) if n not in out],
            [p for n, p in enumerate(pairs) if n in out])


def adapter_step(pairs: Sequence[Pair], selections: Sequence[Selection], rules: Sequence[Rule],
                 out_dir: str | os.PathLike, *, ratings: str | os.PathLike | None = None,
                 holdout: float | None = None, k: int | None = None, seed: int = 0,
                 progress: bool = True, **training) -> dict:
    """The adapter-train step: the pairs with a selection are split (`split_holdout`), the
    adapter is trained on the training part (`train_adapter`, with `training` as its
    settings) and, when pairs are held out, evaluated on them against the ratings store
    `ratings` (all R rules rated), which writes out_dir/metrics.json and metrics.md.
    holdout: the share held out; default DEFAULT_HOLDOUT with ratings, else none.

    A selection of a pair that is not in `pairs`, or of a rule not in the pool, is a
    ValueError before anything is trained; so is a store that lacks a held-out pair's rating
    or rated another text under its id (FileNotFoundError: no store at all): the held-out
    ratings are read first, so out_dir is neither written nor replaced. k: rules per pair to
    predict (default: as many as the longest selection holds). Returns {"train_pairs",
    "heldout_pairs", "k", "training": train_adapter's summary, "metrics": evaluate_adapter's
    result or None}.
    """
    by_id = {s.id: s for s in selections}
    known = {p.id for p in pairs}
    strangers = [pair_id for pair_id in by_id if pair_id not in known]
    if strangers:
        raise ValueError(f"{len(strangers)} selections name pairs that are not in the pairs, "
                         f"e.g. {strangers[0]!r}")
    pairs = [p for p in pairs if p.id in by_id]
    if not pairs:
        raise ValueError("no selection names one of the pairs")
    indices = rule_indices([p.id for p in pairs], [by_id[p.id].rule_ids for p in pairs],
                           [r.id for r in rules], source="selections")
    if k is None:
        k = max(len(row) for row in indices)
        if k == 0:
            raise ValueError("every selection has an empty rule_ids")
    if holdout is None:
        holdout = DEFAULT_HOLDOUT if ratings is not None else 0.0
    if holdout and ratings is None:
        raise ValueError("holdout needs the ratings store: held-out pairs are evaluated on "
                         "their ratings of all rules")
    train, held = split_holdout(pairs, holdout, seed)
    held_ratings = None
    if held:
        from ramo.ratings import read_ratings

        # Before training: a missing store, a missing rating or a held-out pair whose text
        # changed since it was rated is refused with nothing written and nothing replaced.
        held_ratings = read_ratings(ratings, held, rules)
    summary = train_adapter(train, [by_id[p.id].rule_ids for p in train], rules, out_dir, k=k,
                            seed=seed, progress=progress, **training)
    metrics = None
    if held:
        from ramo.adapter.evaluate import evaluate_adapter, write_metrics
        from ramo.adapter.model import RuleAdapter

        adapter = RuleAdapter.from_pretrained(out_dir)
        metrics = evaluate_adapter(adapter, held, [by_id[p.id] for p in held], rules,
                                   held_ratings, k=k, seed=seed)
        write_metrics(out_dir, metrics)
    return {"train_pairs": len(train), "heldout_pairs": len(held), "k": k,
            "training": summary, "metrics": metrics}
