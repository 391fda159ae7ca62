"""The method's data types and their files: rule pools (`Rule`), preference pairs (`Pair`),
selections (`Selection`) and labeled pairs (`Preference`), loaded with validation or taken
from memory, and the atomic writers every output goes through (ramo.io.atomic).

Every loader returns the whole file or raises ValueError naming the file, the position and
the problem; nothing is ever half-loaded.
"""

from ramo.io.pairs import Pair, as_pairs, load_pairs
from ramo.io.preferences import (Preference, load_preferences, preferences_from_pairs,
                                 write_preferences)
from ramo.io.rules import Rule, as_rules, load_rules, rules_fingerprint
from ramo.io.selections import Selection, load_selections, write_selections

__all__ = ["Pair", "Preference", "Rule", "Selection", "as_pairs", "as_rules", "load_pairs",
           "load_preferences", "load_rules", "load_selections", "preferences_from_pairs",
           "rules_fingerprint", "write_preferences", "write_selections"]
