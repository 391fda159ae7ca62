"""Pure PyTorch implementations of ramo's ops: the specification and the test oracle."""

from ramo.reference.judge_scores import judge_scores
from ramo.reference.select_rules import select_rules

__all__ = ["judge_scores", "select_rules"]
