"""ramo: fast, exact kernels for data-adaptive safety rules in reward modelling."""

__version__ = "0.1.0"

from ramo import ops  # noqa: E402  (registers the torch.library ops)
from ramo.ops import JudgeScores, RuleSelection, judge_scores, select_rules  # noqa: E402

__all__ = ["JudgeScores", "RuleSelection", "__version__", "judge_scores", "ops", "select_rules"]
