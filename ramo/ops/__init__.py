"""ramo's fused ops. Each is a torch.library custom op (torch.ops.ramo.*) with a fake kernel
(and autograd where the op has a backward); the functions here pick the backend and check the
arguments."""

from ramo.ops._common import describe_dispatch
from ramo.ops.judge_scores import JudgeScores, judge_scores
from ramo.ops.rule_head_select import RuleHeadSelection, rule_head_select
from ramo.ops.select_rules import RuleSelection, select_rules

__all__ = ["JudgeScores", "RuleHeadSelection", "RuleSelection", "describe_dispatch",
           "judge_scores", "rule_head_select", "select_rules"]
