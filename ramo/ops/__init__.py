"""ramo's fused ops. Each is a torch.library custom op (torch.ops.ramo.*) with a fake kernel
and autograd; the functions here pick the backend and check the arguments."""

from ramo.ops.select_rules import RuleSelection, select_rules

__all__ = ["RuleSelection", "select_rules"]
