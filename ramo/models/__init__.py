"""Reward-model architectures and their loading: the single-score reward model (any
transformers AutoModelForSequenceClassification with one output) and ramo's rule-head model.
Training them is ramo.reward's; both read text through ramo.tokenization."""

from ramo.models.rule_heads import RuleHeadRewardModel, is_rule_head_folder
from ramo.models.sequence_classifier import load_reward_model



def load_any_reward_model(path):
    """(model, tokenizer) from a folder `ramo rm train` wrote, of either kind: a rule-head
    model or a single-score sequence classifier (which must have its score head)."""
    if is_rule_head_folder(path):
        return RuleHeadRewardModel.from_pretrained(path)
    return load_reward_model(path, require_head=True)


__all__ = ["RuleHeadRewardModel", "is_rule_head_folder", "load_any_reward_model",
           "load_reward_model"]
