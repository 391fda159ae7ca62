"""Rating responses against rules with an LLM judge."""

from ramo.judge.rule_judge import RuleJudge, model_fingerprint
from ramo.judge.templates import FEW_SHOT, RULE_FIRST, RULE_LAST, JudgeTemplate

__all__ = ["FEW_SHOT", "JudgeTemplate", "RULE_FIRST", "RULE_LAST", "RuleJudge", "model_fingerprint"]
