"""Rule pools: the one rule type (`Rule`), loaded from JSON, JSONL, YAML or plain text with
validation, or taken from memory (`as_rules`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ramo.io._problems import Problems, coerce_id, type_name
from ramo.io.jsonl import file_kind, read_json, read_jsonl

DEFAULT_POOL = "default"

# Longest suffixes first, so "x.jsonl.gz" is not taken for something ending in ".gz".
_KINDS = (
    (".jsonl.gz", "jsonl"),
    (".jsonl", "jsonl"),
    (".json", "json"),
    (".yaml", "yaml"),
    (".yml", "yaml"),
    (".txt", "text"),
)


@dataclass(frozen=True)
class Rule:
    """One safety rule: a unique id, the text the judge sees, and an optional category."""

    id: str
    text: str
    category: str = ""


def rule_pool_path(path: str | os.PathLike) -> Path:
    """The file a rule pool argument names: "default" is ramo's own pool."""
    if os.fspath(path) == DEFAULT_POOL:
        return Path(__file__).parent.parent / "data" / "rules" / "default.jsonl"
    return Path(path)


def load_rules(path: str | os.PathLike) -> list[Rule]:
    """Load a rule pool, in file order.

    Formats, chosen by suffix:
      - .json / .yaml / .yml: a list of {"id", "text", "category"?} objects, or an object
        whose "rules" key holds that list. Positions in errors are 0-based list indices.
      - .jsonl (or .jsonl.gz): one such object per line. Positions are 1-based line numbers.
      - .txt: one rule text per non-empty line; lines starting with "#" are comments. Ids are
        "r001", "r002", ... in order (wider when there are more than 999 rules).

    Integer ids are stored as strings. In YAML every scalar is read as written ("010" stays
    "010" rather than becoming the octal 8; "yes" stays "yes" rather than True); only an
    empty value or "null"/"~" is null.

    path "default" is ramo's own pool of 100 safety rules (ramo/data/rules/default.jsonl).

    Raises ValueError naming the file, the position and the problem for: an unknown suffix,
    a missing or non-string/non-integer id, a missing, non-string or blank text, a non-string
    category, a duplicate id (both positions named), an empty pool.
    """
    path = rule_pool_path(path)
    kind = file_kind(path, _KINDS, "rule pool")
    if kind == "text":
        rules = _rules_from_text(path)
    else:
        problems = Problems(path)
        rules = _rules_from_records(_records(path, kind, problems), problems)
        problems.raise_if_any()
    if not rules:
        raise ValueError(f"{os.fspath(path)}: empty rule pool: the file holds no rules")
    return rules


def as_rules(items: Sequence[Rule | Mapping[str, Any] | str]) -> list[Rule]:
    """Rules given in memory: `Rule`s as they are, mappings read as a pool file's entries
    ({"id", "text", "category"?}), plain strings as texts whose id is their position.
    ValueError names the first bad rule; ids must be distinct and the list non-empty."""
    if isinstance(items, (str, Mapping)):
        raise ValueError("expected a list of rules, not a single rule")
    rules: list[Rule] = []
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if isinstance(item, Rule):
            rule, issues = item, ([] if isinstance(item.text, str) and item.text.strip()
                                  else ["'text' is empty or not a string"])
        elif isinstance(item, str):
            rule = Rule(id=str(index), text=item)
            issues = [] if item.strip() else ["'text' is empty"]
        else:
            rule, issues = _rule_from_entry(item)
        if issues:
            raise ValueError(f"rule {index}: {'; '.join(issues)}")
        if rule.id in first_seen:
            raise ValueError(f"duplicate rule id {rule.id!r} (rules {first_seen[rule.id]} and "
                             f"{index})")
        first_seen[rule.id] = index
        rules.append(rule)
    if not rules:
        raise ValueError("no rules given")
    return rules


def rules_fingerprint(rules: list[Rule]) -> str:
    """A sha256 hex digest of the pool's ids and texts, in order; stable across versions.

    Order counts because rule indices (rows of rating matrices) follow it. Categories do not
    count: they never reach the judge. The payload is canonical JSON (sorted keys, no
    whitespace, UTF-8) with a format tag, so a future change of scheme cannot collide.
    """
    payload = {"format": "ramo-rules-v1", "rules": [[r.id, r.text] for r in rules]}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _rules_from_text(path: str | os.PathLike) -> list[Rule]:
    try:
        with Path(path).open("r", encoding="utf-8-sig") as f:
            texts = [line.strip() for line in f]
    except UnicodeDecodeError as e:
        where = f"{os.fspath(path)}: not valid UTF-8"
        raise ValueError(f"{where} ({e.reason} at byte {e.start})") from e
    texts = [t for t in texts if t and not t.startswith("#")]
    # Zero-padded so the ids sort in file order as strings too.
    width = max(3, len(str(len(texts))))
    return [Rule(id=f"r{i:0{width}d}", text=t) for i, t in enumerate(texts, start=1)]


def _records(path: str | os.PathLike, kind: str, problems: Problems) -> list[tuple[str, Any]]:
    """(position, raw object) for each rule entry in the file."""
    if kind == "jsonl":
        return read_jsonl(path, problems)
    document = read_json(path) if kind == "json" else read_yaml(path)
    entries = _rule_list(document, path)
    return [(f"index {i}", entry) for i, entry in enumerate(entries)]


def _rule_list(document: Any, path: str | os.PathLike) -> list[Any]:
    if isinstance(document, dict) and isinstance(document.get("rules"), list):
        return document["rules"]
    if isinstance(document, list):
        return document
    if document is None:  # an empty YAML file
        return []
    raise ValueError(
        f"{os.fspath(path)}: expected a list of rules or an object with a 'rules' list, "
        f"got {type_name(document)}"
        + (" without a 'rules' list" if isinstance(document, dict) else "")
    )


def _rules_from_records(records: list[tuple[str, Any]], problems: Problems) -> list[Rule]:
    rules: list[Rule] = []
    for where, entry in records:
        rule, issues = _rule_from_entry(entry)
        if problems.admit(where, rule and rule.id, issues):
            rules.append(rule)
    return rules


def _rule_from_entry(entry: Any) -> tuple[Rule | None, list[str]]:
    """The rule an entry describes, and every problem with it (rule is None if any)."""
    if not isinstance(entry, dict):
        return None, [f"expected an object with 'id' and 'text', got {type_name(entry)}"]
    issues: list[str] = []
    rule_id = None
    if "id" not in entry:
        issues.append("missing 'id'")
    else:
        rule_id, problem = coerce_id(entry["id"])
        if problem:
            issues.append(problem)
    text = entry.get("text")
    if "text" not in entry:
        issues.append("missing 'text'")
    elif not isinstance(text, str):
        issues.append(f"'text' must be a string, got {type_name(text)}")
    elif not text.strip():
        issues.append("'text' is empty")
    category = entry.get("category")
    category = "" if category is None else category
    if not isinstance(category, str):
        issues.append(f"'category' must be a string, got {type_name(category)}")
    if issues:
        return None, issues
    return Rule(id=rule_id, text=text, category=category), []


def read_yaml(path: str | os.PathLike, *, typed: bool = False) -> Any:
    """A YAML document (rule pools, judge templates) whose scalars all stay strings; with
    typed=True (settings files) they take YAML's implicit types, as yaml.safe_load gives."""
    try:
        import yaml
    except ImportError as e:  # pyyaml is optional: only YAML pools need it
        raise ImportError(
            f"{os.fspath(path)}: reading YAML needs PyYAML (pip install pyyaml)"
        ) from e
    loader = yaml.SafeLoader if typed else _strings_yaml_loader(yaml)
    try:
        with Path(path).open("r", encoding="utf-8-sig") as f:
            return yaml.load(f, Loader=loader)
    except yaml.YAMLError as e:
        # One line: PyYAML's own message spans several (context, marks, problem).
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        detail = "; ".join(part for part in (getattr(e, "context", None),
                                              getattr(e, "problem", None)) if part)
        raise ValueError(f"{os.fspath(path)}: {where}malformed YAML: "
                         f"{detail or ' '.join(str(e).split())}") from e
    except UnicodeDecodeError as e:
        where = f"{os.fspath(path)}: not valid UTF-8"
        raise ValueError(f"{where} ({e.reason} at byte {e.start})") from e
    except RecursionError as e:  # PyYAML's composer recurses once per level of nesting
        raise ValueError(f"{os.fspath(path)}: YAML nested too deeply to read") from e
    except (ValueError, KeyError, AttributeError) as e:
        # PyYAML's constructors let Python's errors through for a value they cannot build:
        # a date out of range (2001-02-30), `!!bool maybe`, `!!timestamp x`, an integer
        # longer than sys.get_int_max_str_digits().
        raise ValueError(f"{os.fspath(path)}: malformed YAML: cannot read a value: "
                         f"{type(e).__name__}: {e}") from e


_STRINGS_LOADER = None


def _strings_yaml_loader(yaml):
    """A SafeLoader that resolves only null and merge keys; every other scalar stays a string.

    Rule fields are all strings, and YAML 1.1's implicit typing silently changes what the
    user wrote: `id: 010` is the int 8, `id: 1e3` a float, `text: no` the bool False.
    """
    global _STRINGS_LOADER
    if _STRINGS_LOADER is None:
        keep = {"tag:yaml.org,2002:null", "tag:yaml.org,2002:merge"}
        resolvers = {
            first: [(tag, regexp) for tag, regexp in entries if tag in keep]
            for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        attributes = {"yaml_implicit_resolvers": resolvers}
        _STRINGS_LOADER = type("StringsLoader", (yaml.SafeLoader,), attributes)
    return _STRINGS_LOADER
