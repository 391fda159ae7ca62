"""ramo: fast, exact kernels for data-adaptive safety rules in reward modelling."""

__version__ = "0.1.0"

from ramo import ops  # noqa: E402  (registers the torch.library ops)
from ramo.ops import (  # noqa: E402
    JudgeScores,
    RuleHeadSelection,
    RuleSelection,
    judge_scores,
    rule_head_select,
    select_rules,
)

__all__ = ["JudgeScores", "RuleHeadSelection", "RuleSelection", "__version__", "judge_scores",
           "ops", "rule_head_select", "select_rules"]
