"""Pure PyTorch implementations of ramo's ops: the specification and the test oracle."""

from ramo.reference.judge_scores import judge_scores
from ramo.reference.rule_head_select import rule_head_select
from ramo.reference.select_rules import select_rules

__all__ = ["judge_scores", "rule_head_select", "select_rules"]
