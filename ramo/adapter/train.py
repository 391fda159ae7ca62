"""`ramo adapter train`: train a Rule Adapter on pairs and their max-discrepancy selections.

The adapter learns, from a pair's text alone, which k rules the full selection (top k of R
by `ramo select` on judge ratings of all R rules) chose for it: multi-hot targets, one
sigmoid output per rule, binary cross-entropy (the method's Rule Adapter, design.md §1).

With --ratings (the store the selections were computed from) a share of the pairs
(--holdout, default 0.2) is kept out of training and the adapter is evaluated on it: how
often its k rules give the pair the same label as the full selection, against random k
rules (see ramo/adapter/metrics.py); the results go to DIR/metrics.json and DIR/metrics.md.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ramo.adapter.model import (ADAPTER_FILE, FORMAT, TEXT_FORMAT, encode_pairs, pair_fields,
                                padded, rule_indices)

DEFAULT_EPOCHS = 5
DEFAULT_LEARNING_RATE = 1e-4


def train_adapter(pairs: Sequence, targets: Sequence[Sequence[str]], rules: Sequence,
                  out_dir: str | Path, *, backbone: str = "default", k: int = 5,
                  epochs: float = DEFAULT_EPOCHS, learning_rate: float = DEFAULT_LEARNING_RATE,
                  batch_size: int = 16, max_length: int = 256, seed: int = 0,
                  progress: bool = True) -> dict:
    """Train a Rule Adapter and save it to out_dir (atomically: all of it, or nothing).

    pairs: `Pair`s (or dicts with id, prompt, response_a, response_b). targets: each pair's
    selected rule ids (a selections file's `rule_ids`), in pair order. rules: the pool; the
    adapter has one output per rule, in pool order. backbone: an encoder folder or hub id,
    or "default" (the embedded MiniLM); its head is replaced by one of R outputs.
    k: how many rules the adapter picks by default at prediction time.

    The defaults (5 epochs at 1e-4) are sized for MiniLM on about 1K pairs, not tuned.
    Everything is checked before the backbone is loaded; an unknown rule id in targets is a
    ValueError naming the pair. The folder gets the model, its tokenizer and ramo_adapter.json
    (k, rule ids, the pool's fingerprint, max_length, the loss history). Returns the loss
    history, the final mean training loss, the step count and timings in seconds.
    """
    from ramo.io import rules_fingerprint

    started = time.perf_counter()
    rules = list(rules)
    _check_options(k=k, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                   max_length=max_length, n_rules=len(rules))
    pair_ids = [pair_fields(p, i)[0] for i, p in enumerate(pairs)]
    if not pair_ids:
        raise ValueError("no pairs to train on")
    rule_ids = [r.id for r in rules]
    if len(set(rule_ids)) != len(rule_ids):
        raise ValueError("the rule pool has duplicate ids")
    multi_hot = torch.zeros(len(pair_ids), len(rules))
    for n, row in enumerate(rule_indices(pair_ids, targets, rule_ids)):
        multi_hot[n, row] = 1.0

    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, Trainer,
                              TrainingArguments, set_seed)

    from ramo.encoders import resolve
    from ramo.progress import show_loss_on_bar
    from ramo.io.atomic import atomic_dir, write_json

    set_seed(seed)  # the new head's initial weights come from here
    source = resolve(backbone)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(rules), problem_type="multi_label_classification",
        id2label=dict(enumerate(rule_ids)), label2id={rid: j for j, rid in enumerate(rule_ids)},
        ignore_mismatched_sizes=True)  # a classifier backbone with another label count: new head
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise ValueError(f"max_length = {max_length} is more than the backbone's "
                         f"{positions} positions")
    loaded = time.perf_counter()

    encoded = encode_pairs(tokenizer, pairs, max_length)
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
                "batch_size": batch_size, "seed": seed, "steps": trainer.state.global_step,
                "train_loss": result.training_loss}
    meta = {"format": FORMAT, "text_format": TEXT_FORMAT, "k": k, "rule_ids": rule_ids,
            "rules_fingerprint": rules_fingerprint(rules), "max_length": max_length,
            "backbone": str(backbone), "training": training, "loss_history": history}
    model = trainer.model
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / ADAPTER_FILE, meta)
    saved = time.perf_counter()
    return {"loss_history": history, "train_loss": result.training_loss,
            "steps": trainer.state.global_step, "pairs": len(pair_ids), "rules": len(rules),
            "timings": {"load_s": loaded - started, "tokenize_s": tokenized - loaded,
                        "train_s": trained - tokenized, "save_s": saved - trained,
                        "total_s": saved - started}}


def _check_options(*, k, epochs, learning_rate, batch_size, max_length, n_rules) -> None:
    if n_rules == 0:
        raise ValueError("the rule pool is empty")
    for name, value in (("k", k), ("batch_size", batch_size), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if k > n_rules:
        raise ValueError(f"k = {k} is more than the pool's R = {n_rules} rules")
    for name, value in (("epochs", epochs), ("learning_rate", learning_rate)):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value <= 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")


# ---- the command -----------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, type=Path,
                        help="preference pairs: JSONL(.gz), Parquet or JSON")
    parser.add_argument("--rules", required=True, type=Path,
                        help="the rule pool the selections were made from; 'default' for ramo's")
    parser.add_argument("--selections", required=True, type=Path,
                        help="selections JSONL (from `ramo select`): the targets; pairs "
                        "without a row are left out")
    parser.add_argument("--out", required=True, type=Path, help="the adapter folder to write")
    parser.add_argument("--ratings", type=Path, default=None,
                        help="ratings store with all R rules rated for the pairs: evaluate on "
                        "held-out pairs")
    parser.add_argument("--holdout", type=float, default=None,
                        help="share of the pairs held out for evaluation (needs --ratings; "
                        "default 0.2 with --ratings)")
    parser.add_argument("--backbone", default="default",
                        help="encoder folder or hub id; 'default' for the embedded MiniLM")
    parser.add_argument("--k", type=int, default=None,
                        help="rules per pair to predict (default: as many as the selections hold)")
    parser.add_argument("--epochs", type=float, default=DEFAULT_EPOCHS)
    parser.add_argument("--lr", type=float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256,
                        help="tokens per pair (prompt and both responses)")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation, order, holdout")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ramo.io import load_pairs, load_rules
    from ramo.io.selections import load_selections

    # Every input is read and checked before the backbone is loaded or anything is written.
    pairs = load_pairs(args.pairs)
    rules = load_rules(args.rules)
    rows = {row["id"]: row for row in load_selections(args.selections)}
    known = {p.id for p in pairs}
    strangers = [pair_id for pair_id in rows if pair_id not in known]
    if strangers:
        raise ValueError(f"{args.selections}: {len(strangers)} selection rows name pairs that "
                         f"are not in {args.pairs}, e.g. {strangers[0]!r}")
    pairs = [p for p in pairs if p.id in rows]
    if not pairs:
        raise ValueError(f"{args.selections}: no selection row names a pair of {args.pairs}")
    rule_ids = [r.id for r in rules]
    indices = rule_indices([p.id for p in pairs], [rows[p.id]["rule_ids"] for p in pairs],
                           rule_ids, source=str(args.selections))
    k = args.k if args.k is not None else max(len(row) for row in indices)
    if k == 0:
        raise ValueError(f"{args.selections}: every selection row has an empty rule_ids")
    train, held = _split(pairs, args.holdout, args.ratings is not None, args.seed)
    scores = None
    if held:
        from ramo.ratings import RatingStore

        with RatingStore.open_existing(args.ratings) as store:
            scores, _ = store.to_tensors([p.id for p in held], rule_ids)

    position = {p.id: n for n, p in enumerate(pairs)}
    summary = train_adapter(
        train, [rows[p.id]["rule_ids"] for p in train], rules, args.out, backbone=args.backbone,
        k=k, epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
        max_length=args.max_length, seed=args.seed, progress=not args.no_progress)
    print(f"trained a Rule Adapter over {len(rules)} rules (k = {k}) on {len(train)} pairs: "
          f"{summary['steps']} steps, mean loss {summary['train_loss']:.4f}, "
          f"{summary['timings']['total_s']:.1f} s; saved to {args.out}")
    if held:
        _evaluate(args, rules, held, [indices[position[p.id]] for p in held], scores, k)
    return 0


def _split(pairs: list, holdout: float | None, have_ratings: bool, seed: int):
    """(training pairs, held-out pairs): a seeded shuffle, each part in file order."""
    if holdout is None:
        holdout = 0.2 if have_ratings else 0.0
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"--holdout must be in [0, 1), got {holdout}")
    if holdout > 0 and not have_ratings:
        raise ValueError("--holdout needs --ratings: held-out pairs are evaluated on their "
                         "ratings of all rules")
    if holdout == 0:
        return pairs, []
    count = max(1, round(holdout * len(pairs)))
    if count >= len(pairs):
        raise ValueError(f"--holdout {holdout} of {len(pairs)} pairs leaves none to train on")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    out = set(order[:count])
    return ([p for n, p in enumerate(pairs) if n not in out],
            [p for n, p in enumerate(pairs) if n in out])


def _evaluate(args, rules, held, target_rows, scores, k) -> None:
    from ramo.adapter.metrics import adapter_metrics, metrics_markdown
    from ramo.adapter.model import RuleAdapter
    from ramo.io.atomic import write_json, write_text

    adapter = RuleAdapter.from_pretrained(args.out)
    adapter.check_rules(rules)
    predicted = adapter.predict(held, k=k)
    labels = [p.label for p in held]
    metrics = adapter_metrics(predicted, padded(target_rows), scores[:, 0], scores[:, 1], k=k,
                              seed=args.seed,
                              labels=labels if any(x is not None for x in labels) else None)
    metrics["holdout_ids"] = [p.id for p in held]
    write_json(args.out / "metrics.json", metrics)
    table = metrics_markdown(metrics)
    write_text(args.out / "metrics.md", table)
    print(table, end="")
