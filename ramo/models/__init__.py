"""Reward-model architectures of ramo's own (the single-score reward model is any
transformers AutoModelForSequenceClassification; see ramo.reward)."""

from ramo.models.rule_heads import RuleHeadRewardModel, is_rule_head_folder

__all__ = ["RuleHeadRewardModel", "is_rule_head_folder"]
