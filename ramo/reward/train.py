"""The rm-train step: train a Bradley-Terry reward model on labeled preference pairs.

Input: TRL preference rows (`prompt`, `chosen`, `rejected`, optionally `margin` and
`rule_ids`: what `ramo label` writes) as JSONL(.gz), Parquet or JSON. Output: a folder with
the tokenizer and `ramo_training.json` (the arguments and the per-step loss): a single-score
model that AutoModelForSequenceClassification.from_pretrained loads (one score per
sequence), or with heads="rules" a `ramo.models.RuleHeadRewardModel` (its backbone, heads
and ramo_rule_heads.json; `ramo.models.load_any_reward_model` loads either kind). The
folder appears whole when training has finished, or not at all.

Runs as is on one device, and under torchrun (`torchrun --nproc_per_node N -m ramo rm train
...`) with batch_size pairs per rank per step; only rank 0 writes.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRAINING_RECORD = "ramo_training.json"


def trained_max_length(folder: str | os.PathLike) -> int | None:
    """The tokens per (prompt, response) a folder of `ramo rm train` was trained with (its
    training record), what its readers should default to; None for a model trained
    elsewhere."""
    import json

    record = Path(folder) / TRAINING_RECORD
    if not record.is_file():
        return None
    return json.loads(record.read_text(encoding="utf-8"))["arguments"]["max_length"]


def train_reward_model(train_file: str | os.PathLike | Sequence[Any], out_dir: str | os.PathLike,
                       *, model: str | os.PathLike = "default", epochs: float = 1,
                       learning_rate: float = 2e-5, batch_size: int = 8,
                       gradient_accumulation_steps: int = 1, max_length: int = 256,
                       center_rewards_coefficient: float | None = None, margin: str = "none",
                       bf16: bool = False,
                       gradient_checkpointing: bool = False, seed: int = 0,
                       progress: bool = True, logging_steps: int = 1,
                       max_steps: int | None = None, disable_dropout: bool = True,
                       heads: str = "single", rules=None, k: int = 5,
                       ratings: str | os.PathLike | None = None,
                       regression_weight: float = 0.0, lora: int | None = None) -> dict:
    """Fine-tune `model` as a reward model on the pairs in `train_file`; save it to `out_dir`.

    train_file: a preference file (see `ramo.io.load_preferences`), or pairs already in
        memory (ramo.io.Preference or ramo.io.Pair objects).
    model: "default" (ramo's embedded all-MiniLM-L6-v2 with a new one-score head), a local
        folder or a hub id of any AutoModelForSequenceClassification architecture.
    batch_size: pairs per device per step (each pair is two sequences in one forward pass);
        the global batch is batch_size x gradient_accumulation_steps x ranks.
    max_length: tokens per (prompt, response) sequence (see `ramo.tokenization.encode`).
    epochs / max_steps: how long; max_steps, when given, wins (as in TrainingArguments).
    center_rewards_coefficient: see `bradley_terry_loss`.
    margin: "none" (the default, as the paper's reward model trains: a margin column is
        ignored) or "raw": the loss is -logsigmoid(r_chosen - r_rejected - margin) with each
        row's margin as written (`ramo label` writes the summed score gap of the selected
        rules), as TRL's reward trainer does with a margin column; every row needs one.
    bf16, gradient_checkpointing: passed to TrainingArguments (the latter as
        activation_checkpointing, its name in transformers 5).
    disable_dropout: dropout off during training (the default, as in TRL's reward trainer).
    heads: "single" (one score head) or "rules": a `ramo.models.RuleHeadRewardModel` with one
        head per rule of `rules` (a pool path, "default", or a list of Rule), trained with
        Bradley-Terry on the summed scores of the k heads that differ most per pair.
    ratings, regression_weight: with heads="rules", a ratings store (`ramo rate`, or the
        adapter's) and a weight: the heads are also regressed onto the judge's scores of the
        pairs it rated (rows need `chosen_side`, which `ramo label` writes).
    lora: None (full fine-tuning) or a rank: LoRA adapters on the backbone's linear layers,
        the head(s) trained in full (`ramo.models.lora`, needs peft); merged into the weights
        before saving, so the folder loads as a fully fine-tuned one does.

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
    "truncation" ({"max_length", "sequences", "truncated"}: how many of the 2 x pairs
    sequences were cut at max_length), "runtime_s", "out_dir"}; the same goes into
    out_dir/ramo_training.json.
    """
    import torch
    from transformers import TrainingArguments

    from ramo.io.atomic import atomic_dir, write_json
    from ramo.io import load_preferences, preferences_from_pairs
    from ramo.reward.data import PreferenceCollator, PreferenceDataset
    from ramo.models import load_reward_model
    from ramo.models.lora import trainable_parameters
    from ramo.reward.trainer import RewardTrainer, disable_dropout as no_dropout

    from_file = isinstance(train_file, (str, os.PathLike))
    arguments = {
        "train_file": os.fspath(train_file) if from_file else None,
        "model": str(model), "epochs": epochs, "learning_rate": learning_rate,
        "batch_size": batch_size, "gradient_accumulation_steps": gradient_accumulation_steps,
        "max_length": max_length, "center_rewards_coefficient": center_rewards_coefficient,
        "margin": margin, "bf16": bf16, "gradient_checkpointing": gradient_checkpointing,
        "seed": seed,
        "logging_steps": logging_steps, "max_steps": max_steps, "disable_dropout": disable_dropout,
        "heads": heads, "k": k, "ratings": None if ratings is None else os.fspath(ratings),
        "regression_weight": regression_weight, "lora": lora,
    }
    if heads not in ("single", "rules"):
        raise ValueError(f"heads must be 'single' or 'rules', not {heads!r}")
    check_training_arguments(arguments, out_dir, rules)

    # Everything about the input is checked before the model is loaded.
    if from_file:
        preferences = load_preferences(train_file)
    else:
        preferences = preferences_from_pairs(list(train_file))
        if not preferences:
            raise ValueError("no pairs to train on")
    preferences = _with_margins(preferences, margin, arguments["train_file"] or "pairs")
    order = list(range(len(preferences)))
    random.Random(seed).shuffle(order)
    preferences = [preferences[i] for i in order]

    if heads == "rules":
        from ramo.io import load_rules
        from ramo.reward.trainer import RuleHeadTrainer as trainer_class

        pool = load_rules(rules) if isinstance(rules, (str, os.PathLike)) else list(rules or ())
        if not pool:
            raise ValueError("heads='rules' needs the rule pool (rules=...)")
        rated_scores = (None if ratings is None
                        else _rated_scores(ratings, preferences, pool))
        extra = {"regression_weight": regression_weight}
        net, tokenizer = _rule_head_model(model, [r.id for r in pool], seed=seed, k=k)
    else:
        if ratings is not None:
            raise ValueError("ratings (regression onto the judge) needs heads='rules'")
        trainer_class, rated_scores, extra = RewardTrainer, None, {}
        net, tokenizer = load_reward_model(model, seed=seed)
    from ramo.tokenization import check_max_length, count_truncated

    check_max_length(net, max_length)
    if lora is not None:
        from ramo.models.lora import add_lora

        if heads == "rules":
            net.backbone = add_lora(net.backbone, lora, classifier=False)
        else:
            net = add_lora(net, lora, classifier=True)
        if gradient_checkpointing:  # frozen embeddings: checkpointed blocks need a grad input
            (net.backbone if heads == "rules" else net).enable_input_require_grads()
    if disable_dropout:
        no_dropout(net)
    truncation = {"max_length": max_length, "sequences": 2 * len(preferences),
                  "truncated": count_truncated(
                      tokenizer, [p.model_prompt for p in preferences] * 2,
                      [p.chosen for p in preferences] + [p.rejected for p in preferences],
                      max_length)}
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
            # A sequence classifier uses every parameter in each forward, so the search for
            # unused ones would cost a graph traversal per step (and a warning per rank) for
            # nothing. Rule heads read the backbone's hidden states, not a pooler the backbone
            # may have (BERT's), whose parameters then get no gradient under DDP.
            ddp_find_unused_parameters=heads == "rules")
        trainer = trainer_class(
            model=net, args=args,
            train_dataset=PreferenceDataset(preferences, tokenizer, max_length, rated_scores),
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
        "trainable_parameters": trainable_parameters(net),
        "global_batch_size": batch_size * gradient_accumulation_steps * world,
        "world_size": world,
        "truncation": truncation,
        "runtime_s": time.perf_counter() - start,
        "out_dir": os.fspath(out_dir),
    }
    if trainer.is_world_process_zero():
        import ramo

        record = {"ramo": ramo.__version__, "arguments": arguments,
                  **{k: v for k, v in summary.items() if k != "out_dir"}}
        with atomic_dir(out_dir) as tmp:
            model_to_save = trainer.accelerator.unwrap_model(trainer.model)
            if lora is not None:
                from ramo.models.lora import merge_lora

                if heads == "rules":
                    model_to_save.backbone = merge_lora(model_to_save.backbone)
                else:
                    model_to_save = merge_lora(model_to_save)
            model_to_save.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(Path(tmp) / TRAINING_RECORD, record)
    # Other ranks return only once the folder is there, so any rank may read it next.
    trainer.accelerator.wait_for_everyone()
    return summary


def _rule_head_model(name_or_path, rule_ids: list[str], *, seed: int, k: int):
    """(RuleHeadRewardModel, tokenizer): a rule-head folder goes on training with its heads
    (which must be this pool's, in its order); any other model is a backbone for new heads."""
    from ramo.models import RuleHeadRewardModel
    from ramo.models.rule_heads import is_rule_head_folder

    if name_or_path == "default" or not is_rule_head_folder(name_or_path):
        return RuleHeadRewardModel.from_backbone(name_or_path, rule_ids, seed=seed, k=k)
    net, tokenizer = RuleHeadRewardModel.from_pretrained(name_or_path)
    if net.rule_ids != rule_ids:
        raise ValueError(f"{name_or_path} has heads for {len(net.rule_ids)} rules "
                         f"({', '.join(net.rule_ids[:3])}, ...) that are not the pool's "
                         f"{len(rule_ids)} in its order; give the pool it was trained on")
    net.k = k
    return net, tokenizer


def _rated_scores(path, preferences, rules) -> dict:
    """id -> (chosen [R], rejected [R]) judge scores from a ratings store, NaN where the
    store has no rating of that side and rule. The store reads a pair's ratings only when its
    texts are the ones rated, so each row goes back to its pair: response A is the chosen
    text when chosen_side is "a", the rejected one when it is "b"; and a rule's only with the
    text it was rated with."""
    from ramo.io import Pair
    from ramo.ratings import RatingStore

    missing = [p.id for p in preferences if p.chosen_side is None]
    if missing:
        raise ValueError(f"regression onto judge ratings needs each row's 'chosen_side' (a or b; "
                         f"`ramo label` writes it); {len(missing)} rows lack it, e.g. {missing[0]!r}")
    pairs = [Pair(p.id, p.prompt, *((p.chosen, p.rejected) if p.chosen_side == "a"
                                    else (p.rejected, p.chosen))) for p in preferences]
    with RatingStore.open_existing(path) as store:
        rated = store.scores(pairs, rules)
    if not rated.valid.any():
        raise ValueError(f"{os.fspath(path)} holds no ratings of these pairs on these rules")
    return {p.id: (rated.score[n, 0], rated.score[n, 1]) if p.chosen_side == "a"
            else (rated.score[n, 1], rated.score[n, 0]) for n, p in enumerate(preferences)}


MARGINS = ("none", "raw")


def _with_margins(preferences: list, margin: str, source: str) -> list:
    """The preferences with the margins the loss is to use: none, or each row's own."""
    from dataclasses import replace

    if margin == "none":
        return [p if p.margin is None else replace(p, margin=None) for p in preferences]
    missing = [p.id for p in preferences if p.margin is None]
    if missing:
        raise ValueError(f"{source}: margin='raw' needs a 'margin' on every row; {len(missing)} "
                         f"rows have none, e.g. pair {missing[0]!r}")
    return preferences


def check_training_arguments(a: dict, out_dir: str | os.PathLike, rules=None) -> None:
    """`train_reward_model`'s arguments `a` and its rules (ValueError naming the argument): by
    it, and by the pipeline before its first step writes anything."""
    from ramo.checks import non_negative_number, positive_integer, positive_number
    from ramo.io.atomic import check_output_dir
    from ramo.models.lora import check_rank

    check_rank(a["lora"])
    if a["margin"] not in MARGINS:
        raise ValueError(f"margin must be one of {MARGINS}, not {a['margin']!r}")
    for name in ("batch_size", "gradient_accumulation_steps", "max_length", "logging_steps"):
        positive_integer(name, a[name])
    if a["max_steps"] is not None:
        positive_integer("max_steps", a["max_steps"])
    for name in ("epochs", "learning_rate"):
        positive_number(name, a[name])
    if a["center_rewards_coefficient"] is not None:
        non_negative_number("center_rewards_coefficient", a["center_rewards_coefficient"])
    # A negative weight would train the heads away from the judge's scores.
    non_negative_number("regression_weight", a["regression_weight"])
    check_output_dir(out_dir, {name: a.get(name) for name in ("train_file", "model", "ratings")}
                     | {"rules": rules}, marker=TRAINING_RECORD)
