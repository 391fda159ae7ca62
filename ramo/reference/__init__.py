"""Pure PyTorch implementations of ramo's ops: the specification and the test oracle."""

from ramo.reference.select_rules import select_rules

__all__ = ["select_rules"]
