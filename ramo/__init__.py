"""ramo: fast, exact kernels for data-adaptive safety rules in reward modelling."""

__version__ = "0.1.0"

from ramo import ops  # noqa: E402  (registers the torch.library ops)
from ramo.ops import RuleSelection, select_rules  # noqa: E402

__all__ = ["RuleSelection", "__version__", "ops", "select_rules"]
