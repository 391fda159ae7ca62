"""ramo's fused ops. Each is a torch.library custom op (torch.ops.ramo.*) with a fake kernel
(and autograd where the op has a backward); the functions here pick the backend and check the
arguments."""

from ramo.ops.judge_scores import JudgeScores, judge_scores
from ramo.ops.select_rules import RuleSelection, select_rules

__all__ = ["JudgeScores", "RuleSelection", "judge_scores", "select_rules"]
