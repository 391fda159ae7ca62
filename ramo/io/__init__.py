"""Input loaders with validation: rule pools and preference pairs (design.md §5).

Every loader returns the whole file or raises ValueError naming the file, the position and
the problem; nothing is ever half-loaded.
"""

from ramo.io.pairs import Pair, load_pairs
from ramo.io.rules import Rule, load_rules, rules_fingerprint

__all__ = ["Pair", "Rule", "load_pairs", "load_rules", "rules_fingerprint"]
