"""Reward-model architectures and their loading: the single-score reward model (any
transformers AutoModelForSequenceClassification with one output) and ramo's rule-head model.
Training them is ramo.reward's; both read text through ramo.tokenization."""

from ramo.models.rule_heads import RuleHeadRewardModel, is_rule_head_folder
from ramo.models.sequence_classifier import load_reward_model

__all__ = ["RuleHeadRewardModel", "is_rule_head_folder", "load_reward_model"]
