"""A transformers Trainer for Bradley-Terry reward models.

Written on transformers' own Trainer (no TRL): compute_loss runs the chosen and rejected
rows of a batch through the model in one forward pass and applies `bradley_terry_loss`.
Everything else (optimiser, schedule, gradient accumulation, DDP under torchrun, bf16,
gradient checkpointing, the progress bar) is the Trainer's.
"""

from __future__ import annotations


import torch
from transformers import Trainer

from ramo.progress import show_loss_on_bar
from ramo.reward.loss import bradley_terry_loss


class RewardTrainer(Trainer):
    """Trainer whose loss is Bradley-Terry on [chosen rows; rejected rows] batches
    (`ramo.reward.data.PreferenceCollator`) with an optional `margin` [B].

    The model must give one score per row: any AutoModelForSequenceClassification with
    num_labels=1. The arguments' remove_unused_columns is set to False: the Trainer would
    otherwise drop the batches' `chosen`, `rejected` and `margin` before the collator sees
    them.

    evaluate() reports `eval_loss`, the Bradley-Terry loss of the eval set, and
    `compute_metrics` gets [B, 2] (chosen, rejected) rewards as predictions with labels 0.

    loss_history: [{"step", "loss"}] as logged by the Trainer (every `logging_steps`
    optimiser steps): the mean over the step's micro-batches and, under torchrun, over the
    ranks, i.e. the loss of the global batch.
    """

    # compute_loss returns a per-micro-batch mean; the Trainer divides it by the number of
    # accumulation steps itself.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, center_rewards_coefficient: float | None = None,
                 progress: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.args.remove_unused_columns = False
        self.center_rewards_coefficient = center_rewards_coefficient
        show_loss_on_bar(self, progress)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """(loss, [B, 2] rewards, zeros [B]): the batches carry no `labels`, so the Trainer's
        own step would compute no loss at all (and load_best_model_at_end could not run)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        loss = loss.detach()
        if prediction_loss_only:
            return loss, None, None
        rewards = torch.stack([outputs["rewards_chosen"], outputs["rewards_rejected"]], 1)
        return loss, rewards.detach(), torch.zeros(rewards.shape[0], dtype=torch.long,
                                                     device=rewards.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        margin = inputs.pop("margin", None)
        logits = model(**inputs).logits
        if logits.dim() != 2 or logits.shape[1] != 1:
            raise ValueError(f"a reward model must give one score per sequence (num_labels=1); "
                             f"this one gives logits of shape {tuple(logits.shape)}")
        rewards = logits[:, 0]
        half = rewards.shape[0] // 2
        chosen, rejected = rewards[:half], rewards[half:]
        loss = bradley_terry_loss(chosen, rejected, margin, self.center_rewards_coefficient)
        if return_outputs:
            return loss, {"rewards_chosen": chosen, "rewards_rejected": rejected}
        return loss

    @property
    def loss_history(self) -> list[dict]:
        return [{"step": entry["step"], "loss": entry["loss"]}
                for entry in self.state.log_history if "loss" in entry]


class RuleHeadTrainer(RewardTrainer):
    """RewardTrainer for `ramo.models.RuleHeadRewardModel`: per pair, the fused
    `rule_head_select` picks the k heads on which chosen and rejected differ most, and the
    Bradley-Terry loss applies to the summed scores on them (gradients reach only those
    heads).

    regression_weight: when the batch has `rated_scores` [2B, R] (the judge's ratings of the
    rows, NaN where a rule was not rated), add regression_weight x the mean squared error of
    the heads' scores against the rated entries, so that each head keeps its rule's meaning.
    """

    def __init__(self, *args, regression_weight: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.regression_weight = regression_weight

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The caller's save writes the folder `RuleHeadRewardModel.from_pretrained` and
        `load_any_reward_model` read (the Trainer's own, for a model that is not a
        PreTrainedModel, is a bare state dict). Checkpoints, the Trainer's internal calls,
        keep the state dict, which resume_from_checkpoint reads."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        if self.args.should_save:
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            self.accelerator.unwrap_model(self.model).save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        margin = inputs.pop("margin", None)
        rated = inputs.pop("rated_scores", None)
        # Through the (possibly DDP-wrapped) model's forward, heads and all, so that DDP
        # reduces the heads' gradients too.
        selection = model(**inputs, pairs=True)
        loss = bradley_terry_loss(selection.reward_a, selection.reward_b, margin,
                                  self.center_rewards_coefficient)
        if rated is not None and self.regression_weight:
            loss = loss + self.regression_weight * head_regression_loss(
                torch.cat([selection.scores_a, selection.scores_b]), rated)
        if return_outputs:
            return loss, {"rewards_chosen": selection.reward_a,
                          "rewards_rejected": selection.reward_b}
        return loss


def head_regression_loss(scores: torch.Tensor, judge: torch.Tensor) -> torch.Tensor:
    """Mean squared error of head scores [M, R] against judge scores [M, R] over the entries
    the judge rated (finite); 0 when there are none."""
    rated = torch.isfinite(judge)
    if not rated.any():
        return scores.sum() * 0.0
    diff = scores.float()[rated] - judge.to(scores.device, torch.float32)[rated]
    return (diff * diff).mean()


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every nn.Dropout's p to 0, and every attention module's float `attention_dropout`
    (Llama-family attention applies it itself, with no nn.Dropout), to 0.0; the saved config
    is unchanged.

    A reward model compares two forward passes; dropout makes them noisy in different ways,
    and it makes runs with different numbers of ranks draw different masks. TRL's reward
    trainer disables it by default too.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


__all__ = ["RewardTrainer", "RuleHeadTrainer", "disable_dropout", "head_regression_loss"]
