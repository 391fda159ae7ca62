"""`ramo rm train`: train a Bradley-Terry reward model on labelled preference pairs.

Input: TRL preference rows (`prompt`, `chosen`, `rejected`, optionally `margin` and
`rule_ids`: what `ramo label` writes) as JSONL(.gz), Parquet or JSON. Output: a folder that
AutoModelForSequenceClassification.from_pretrained loads (one score per sequence), with the
tokenizer and `ramo_training.json` (the arguments and the per-step loss). The folder appears
whole when training has finished, or not at all.

Runs as is on one device, and under `torchrun --nproc_per_node N -m ramo rm train ...` with
--batch-size pairs per rank per step; only rank 0 writes.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_LEARNING_RATE = 2e-5


def train_reward_model(train_file: str | os.PathLike | Sequence[Any], out_dir: str | os.PathLike,
                       *, model: str | os.PathLike = "default", epochs: float = 1,
                       learning_rate: float = DEFAULT_LEARNING_RATE, batch_size: int = 8,
                       gradient_accumulation_steps: int = 1, max_length: int = 256,
                       center_rewards_coefficient: float | None = None, bf16: bool = False,
                       gradient_checkpointing: bool = False, seed: int = 0,
                       progress: bool = True, logging_steps: int = 1,
                       max_steps: int | None = None, disable_dropout: bool = True,
                       heads: str = "single", rules=None, k: int = 5,
                       ratings: str | os.PathLike | None = None,
                       regression_weight: float = 0.0) -> dict:
    """Fine-tune `model` as a reward model on the pairs in `train_file`; save it to `out_dir`.

    train_file: a preference file (see `ramo.reward.load_preferences`), or pairs already in
        memory (ramo.io.Pair or ramo.reward.Preference objects).
    model: "default" (ramo's embedded all-MiniLM-L6-v2 with a new one-score head), a local
        folder or a hub id of any AutoModelForSequenceClassification architecture.
    batch_size: pairs per device per step (each pair is two sequences in one forward pass);
        the global batch is batch_size x gradient_accumulation_steps x ranks.
    max_length: tokens per (prompt, response) sequence (see `ramo.reward.encode`).
    epochs / max_steps: how long; max_steps, when given, wins (as in TrainingArguments).
    center_rewards_coefficient: see `bradley_terry_loss`. When the pairs have margins, the
        loss is -logsigmoid(r_chosen - r_rejected - margin), as in TRL.
    bf16, gradient_checkpointing: passed to TrainingArguments (the latter as
        activation_checkpointing, its name in transformers 5).
    disable_dropout: dropout off during training (the default, as in TRL's reward trainer).
    heads: "single" (one score head) or "rules": a `ramo.models.RuleHeadRewardModel` with one
        head per rule of `rules` (a pool path, "default", or a list of Rule), trained with
        Bradley-Terry on the summed scores of the k heads that differ most per pair.
    ratings, regression_weight: with heads="rules", a ratings store (`ramo rate`, or the
        adapter's) and a weight: the heads are also regressed onto the judge's scores of the
        pairs it rated (rows need `chosen_side`, which `ramo label` writes).

    The pairs are shuffled once with `seed` and then read in order, every epoch. Since
    accelerate (without split_batches) hands rank r the batches r, r + N, r + 2N, ... of that
    order, the N per-rank batches of a step are N consecutive batches: the same global batch
    a single process with N times the batch size reads. So one process and torchrun give the
    same loss curve, up to the order of floating-point reductions (as long as the number of
    pairs fills the last global batch; otherwise accelerate pads the last one on each rank by
    wrapping around to the first pairs).

    The optimiser is the Trainer's default (AdamW, linear decay to 0, no warmup, gradient
    clipping at 1.0). Returns {"loss_history": [{"step", "loss"}], "final_loss", "train_loss"
    (the mean over all steps), "steps", "pairs", "global_batch_size", "world_size",
    "runtime_s", "out_dir"}; the same goes into out_dir/ramo_training.json.
    """
    import torch
    from transformers import TrainingArguments

    from ramo.io.atomic import atomic_dir, write_json
    from ramo.reward.data import (PreferenceCollator, PreferenceDataset, load_preferences,
                                  preferences_from_pairs)
    from ramo.reward.trainer import RewardTrainer, disable_dropout as no_dropout, load_reward_model

    from_file = isinstance(train_file, (str, os.PathLike))
    arguments = {
        "train_file": os.fspath(train_file) if from_file else None,
        "model": str(model), "epochs": epochs, "learning_rate": learning_rate,
        "batch_size": batch_size, "gradient_accumulation_steps": gradient_accumulation_steps,
        "max_length": max_length, "center_rewards_coefficient": center_rewards_coefficient,
        "bf16": bf16, "gradient_checkpointing": gradient_checkpointing, "seed": seed,
        "logging_steps": logging_steps, "max_steps": max_steps, "disable_dropout": disable_dropout,
        "heads": heads, "k": k, "ratings": None if ratings is None else os.fspath(ratings),
        "regression_weight": regression_weight,
    }
    if heads not in ("single", "rules"):
        raise ValueError(f"heads must be 'single' or 'rules', not {heads!r}")
    _check_arguments(arguments, out_dir)

    # Everything about the input is checked before the model is loaded.
    if from_file:
        preferences = load_preferences(train_file)
    else:
        preferences = preferences_from_pairs(list(train_file))
        if not preferences:
            raise ValueError("no pairs to train on")
    order = list(range(len(preferences)))
    random.Random(seed).shuffle(order)
    preferences = [preferences[i] for i in order]

    if heads == "rules":
        from ramo.io import load_rules
        from ramo.models import RuleHeadRewardModel
        from ramo.reward.trainer import RuleHeadTrainer as trainer_class

        pool = load_rules(rules) if isinstance(rules, (str, os.PathLike)) else list(rules or ())
        if not pool:
            raise ValueError("heads='rules' needs the rule pool (rules=...)")
        judge_scores = (None if ratings is None
                        else _judge_scores(ratings, preferences, [r.id for r in pool]))
        extra = {"regression_weight": regression_weight}
        net, tokenizer = RuleHeadRewardModel.from_backbone(model, [r.id for r in pool],
                                                           seed=seed, k=k)
    else:
        if ratings is not None:
            raise ValueError("ratings (regression onto the judge) needs heads='rules'")
        trainer_class, judge_scores, extra = RewardTrainer, None, {}
        net, tokenizer = load_reward_model(model, seed=seed)
    if disable_dropout:
        no_dropout(net)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ramo-rm-train-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=gradient_accumulation_steps, learning_rate=learning_rate,
            num_train_epochs=epochs, max_steps=max_steps if max_steps is not None else -1,
            logging_strategy="steps", logging_steps=logging_steps, save_strategy="no",
            eval_strategy="no", report_to=[], bf16=bf16,
            activation_checkpointing=gradient_checkpointing,
            seed=seed, data_seed=seed, disable_tqdm=not progress, remove_unused_columns=False,
            train_sampling_strategy="sequential", dataloader_drop_last=False,
            dataloader_pin_memory=torch.cuda.is_available(), skip_memory_metrics=True,
            # Without use_cpu, accelerate treats torchrun ranks on a CPU-only machine as
            # independent single processes; with it, they join one gloo DDP job.
            use_cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()),
            # A sequence classifier uses every parameter in each forward; the search for unused
            # ones would cost a graph traversal per step (and a warning per rank).
            ddp_find_unused_parameters=False)
        trainer = trainer_class(
            model=net, args=args,
            train_dataset=PreferenceDataset(preferences, tokenizer, max_length, judge_scores),
            data_collator=PreferenceCollator(tokenizer), processing_class=tokenizer,
            center_rewards_coefficient=center_rewards_coefficient, progress=progress, **extra)
        output = trainer.train()
    history = trainer.loss_history
    world = trainer.args.world_size
    summary = {
        "loss_history": history,
        "final_loss": history[-1]["loss"] if history else None,
        "train_loss": output.training_loss,
        "steps": output.global_step,
        "pairs": len(preferences),
        "global_batch_size": batch_size * gradient_accumulation_steps * world,
        "world_size": world,
        "runtime_s": time.perf_counter() - start,
        "out_dir": os.fspath(out_dir),
    }
    if trainer.is_world_process_zero():
        import ramo

        record = {"ramo": ramo.__version__, "arguments": arguments,
                  **{k: v for k, v in summary.items() if k != "out_dir"}}
        with atomic_dir(out_dir) as tmp:
            model_to_save = trainer.accelerator.unwrap_model(trainer.model)
            model_to_save.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(Path(tmp) / "ramo_training.json", record)
    # Other ranks return only once the folder is there, so any rank may read it next.
    trainer.accelerator.wait_for_everyone()
    return summary


def _judge_scores(path, preferences, rule_ids) -> dict:
    """id -> (chosen [R], rejected [R]) judge scores from a ratings store, NaN where the
    store has no rating of that side and rule."""
    import torch

    from ramo.ratings import RatingStore

    missing = [p.id for p in preferences if p.chosen_side is None]
    if missing:
        raise ValueError(f"regression onto judge ratings needs each row's 'chosen_side' (a or b; "
                         f"`ramo label` writes it); {len(missing)} rows lack it, e.g. {missing[0]!r}")
    column = {rid: j for j, rid in enumerate(rule_ids)}
    wanted = {p.id for p in preferences}
    table: dict = {}
    with RatingStore.open_existing(path) as store:
        for row in store.read():
            if row.pair_id in wanted and row.rule_id in column:
                side = table.setdefault((row.pair_id, row.side),
                                        torch.full((len(rule_ids),), float("nan")))
                side[column[row.rule_id]] = row.score
    if not table:
        raise ValueError(f"{os.fspath(path)} holds no ratings of these pairs on these rules")
    empty = torch.full((len(rule_ids),), float("nan"))
    out = {}
    for p in preferences:
        chosen, rejected = (0, 1) if p.chosen_side == "a" else (1, 0)
        out[p.id] = (table.get((p.id, chosen), empty), table.get((p.id, rejected), empty))
    return out


def _check_arguments(a: dict, out_dir: str | os.PathLike) -> None:
    positive = {"batch_size": int, "gradient_accumulation_steps": int, "max_length": int,
                "logging_steps": int, "epochs": (int, float), "learning_rate": (int, float)}
    for name, kind in positive.items():
        value = a[name]
        if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if a["max_steps"] is not None and (not isinstance(a["max_steps"], int) or a["max_steps"] < 1):
        raise ValueError(f"max_steps must be a positive integer or None, got {a['max_steps']!r}")
    if a["center_rewards_coefficient"] is not None and a["center_rewards_coefficient"] < 0:
        raise ValueError("center_rewards_coefficient must be >= 0")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"{os.fspath(out_dir)}: exists and is not a folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="labelled pairs: prompt, chosen, rejected (+ margin, rule_ids); "
                        "JSONL(.gz), Parquet or JSON")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder to save the trained model, tokenizer and "
                        "ramo_training.json to (replaced whole when training succeeds)")
    parser.add_argument("--model", default="default",
                        help="backbone: 'default' (all-MiniLM-L6-v2), a local folder or a hub id "
                        "(any AutoModelForSequenceClassification; an existing reward model works)")
    parser.add_argument("--epochs", type=float, default=1.0,
                        help="passes over the data (default 1)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimiser steps (overrides --epochs)")
    parser.add_argument("--lr", type=float, default=DEFAULT_LEARNING_RATE,
                        help="peak learning rate, linear decay to 0 "
                        f"(default {DEFAULT_LEARNING_RATE})")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="pairs per device per step; each pair is 2 sequences (default 8)")
    parser.add_argument("--grad-accum", type=int, default=1,
                        help="gradient accumulation steps (default 1)")
    parser.add_argument("--max-length", type=int, default=256,
                        help="tokens per prompt + response; the response is kept first "
                        "(default 256)")
    parser.add_argument("--center-rewards", type=float, default=None, metavar="C",
                        help="add C * mean((r_chosen + r_rejected)^2) to the loss (e.g. 0.01)")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in backward: less memory, more time")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the one-time shuffle and of the new head (default 0)")
    parser.add_argument("--heads", default="single", choices=["single", "rules"],
                        help="single: one score head (default); rules: one head per rule of "
                        "--rules, trained on the k heads that differ most per pair "
                        "(ramo.models.RuleHeadRewardModel)")
    parser.add_argument("--rules", default=None,
                        help="with --heads rules: the rule pool ('default' for ramo's)")
    parser.add_argument("-k", "--k", type=int, default=5,
                        help="with --heads rules: heads selected per pair (default 5)")
    parser.add_argument("--ratings", type=Path, default=None,
                        help="with --heads rules: a ratings store; the heads are also regressed "
                        "onto the judge's scores of the pairs it rated")
    parser.add_argument("--regression-weight", type=float, default=1.0,
                        help="with --ratings: weight of that regression (default 1.0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    summary = train_reward_model(
        args.data, args.out, model=args.model, epochs=args.epochs, learning_rate=args.lr,
        batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length, center_rewards_coefficient=args.center_rewards,
        bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing, seed=args.seed,
        progress=not args.no_progress, max_steps=args.max_steps, heads=args.heads,
        rules=args.rules, k=args.k, ratings=args.ratings,
        regression_weight=args.regression_weight if args.ratings else 0.0)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained on {summary['pairs']} pairs: {summary['steps']} steps of "
              f"{summary['global_batch_size']} pairs, final loss {summary['final_loss']:.4f} "
              f"(mean {summary['train_loss']:.4f}), {summary['runtime_s']:.1f} s; "
              f"saved to {args.out}")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # launched by torchrun
        dist.destroy_process_group()
    return 0
