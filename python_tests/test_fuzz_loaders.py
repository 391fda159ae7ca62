"""Fuzzed loaders (issue 16): whatever a file holds, every loader either loads it or raises a
ValueError naming the file (and the line or row at fault, where one is); never another
exception, never a write. A UTF-8 BOM, CRLF line endings and blank lines change nothing.

The inputs: arbitrary bytes, rows with values of the wrong type, deep nesting, huge integers,
NaN and Infinity (which Python's json reads), invalid UTF-8, truncated gzip, odd Parquet
columns and odd YAML.
"""

import gzip
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ramo.io import load_pairs, load_rules, load_selections
from ramo.io.preferences import load_preferences
from ramo.io.prompts import load_prompts
from ramo.pipeline import Config

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    pa = pq = None

try:
    import yaml
except ImportError:
    yaml = None

# Small enough that the whole file runs in about a minute on two slow cores.
FUZZ = settings(max_examples=20, deadline=None)
FEW = settings(max_examples=8, deadline=None)

BOM = b"\xef\xbb\xbf"
DEEP = "[" * 10_000 + "]" * 10_000
MISSING = object()  # a bad "value" that removes the field


# --- running a loader on bytes -------------------------------------------------------------


@dataclass
class Refused:
    message: str


def load_bytes(loader, folder: str, name: str, data: bytes):
    """The loader's result on a file `name` in `folder` holding `data`, or Refused(message).

    Fails the test if the loader raises anything but ValueError, if the message does not name
    the file, or if anything but the input is left in the folder. The file is removed after,
    so one folder serves several loads."""
    path = Path(folder) / name
    path.write_bytes(data)
    try:
        result = loader(path)
    except ValueError as e:
        assert str(path) in str(e), f"the error does not name the file: {str(e)!r}"
        result = Refused(str(e))
    finally:
        assert os.listdir(folder) == [name], "a loader wrote next to its input"
        path.unlink()
    return result


def outcome(loader, name: str, data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        return load_bytes(loader, folder, name, data)


def assert_names(result, position: str) -> None:
    """The load was refused and the message names `position` ("line 3", "row 0")."""
    assert isinstance(result, Refused), f"loaded a file with a bad {position}"
    assert re.search(rf"\b{position}\b", result.message), (position, result.message)


# --- values and rows -----------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # encodable as UTF-8
WORDS = TEXT.map(lambda s: "w" + s)  # never blank
HUGE = st.sampled_from([10**400, -10**400, 2**64])
FINITE = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)
NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf"), 10**400, -10**400])
SCALARS = (st.none() | st.booleans() | st.integers() | HUGE | st.floats() | TEXT)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8)
NON_STRINGS = JSON_VALUES.filter(lambda v: not isinstance(v, str))
NON_LISTS = JSON_VALUES.filter(lambda v: not isinstance(v, (str, list)))
BLANK = st.sampled_from(["", " ", "\t", "  \t "])
BAD_IDS = (st.none() | st.booleans() | st.floats() | BLANK
           | st.lists(SCALARS, max_size=2) | st.dictionaries(TEXT, SCALARS, max_size=2))
NOT_A_NUMBER = NON_FINITE | NON_STRINGS.filter(
    lambda v: isinstance(v, bool) or not isinstance(v, (int, float))) | TEXT


def is_label(value) -> bool:
    return value is None or (type(value) is int and value in (0, 1))


def is_preference(value) -> bool:
    return type(value) is int and value in (-1, 0, 1)


@dataclass
class Kind:
    """A loader, the suffixes it reads, its valid rows (without ids: those are added by
    position, so they are distinct) and, per field, values that make a row bad."""

    loader: object
    suffixes: tuple
    rows: st.SearchStrategy
    bad: dict
    json_position: str = "row"  # how the loader names a position in a JSON list


PAIR_ROW = st.fixed_dictionaries({"prompt": WORDS, "response_a": WORDS, "response_b": WORDS},
                                 optional={"label": st.sampled_from([0, 1, None])})
PAIR_BAD = {field: NON_STRINGS | st.just(MISSING) for field in
            ("prompt", "response_a", "response_b")}
PAIR_BAD["label"] = JSON_VALUES.filter(lambda v: not is_label(v))


def preference_rows(with_margin: bool):
    margin = {"margin": FINITE} if with_margin else {}
    return st.lists(st.fixed_dictionaries(
        {"prompt": WORDS, "chosen": WORDS, "rejected": WORDS, **margin},
        optional={"rule_ids": st.lists(TEXT, max_size=3), "chosen_side": st.sampled_from("ab")}),
        min_size=1, max_size=5)


KINDS = {
    "pairs": Kind(load_pairs, (".jsonl", ".jsonl.gz", ".json", ".parquet"),
                  st.lists(PAIR_ROW, min_size=1, max_size=5), PAIR_BAD),
    "preferences": Kind(
        load_preferences, (".jsonl", ".jsonl.gz", ".json", ".parquet"),
        st.booleans().flatmap(preference_rows),
        {"prompt": NON_STRINGS | st.just(MISSING), "chosen": NON_STRINGS | st.just(MISSING),
         "margin": NOT_A_NUMBER.filter(lambda v: v is not None),
         "rule_ids": NON_LISTS.filter(lambda v: v is not None)
         | st.lists(NON_STRINGS, min_size=1, max_size=2),
         "chosen_side": JSON_VALUES.filter(lambda v: v not in (None, "a", "b"))}),
    "prompts": Kind(
        load_prompts, (".jsonl", ".jsonl.gz", ".json", ".parquet"),
        st.lists(st.fixed_dictionaries({"prompt": WORDS}), min_size=1, max_size=5),
        {"prompt": NON_LISTS | BLANK | st.just([]) | st.just(MISSING), "id": BAD_IDS}),
    "rules": Kind(
        load_rules, (".jsonl", ".jsonl.gz", ".json", ".yaml", ".txt"),
        st.lists(st.fixed_dictionaries({"text": WORDS}, optional={"category": TEXT | st.none()}),
                 min_size=1, max_size=5),
        {"text": NON_STRINGS | BLANK | st.just(MISSING), "id": BAD_IDS | st.just(MISSING),
         "category": NON_STRINGS.filter(lambda v: v is not None)},
        json_position="index"),
    "selections": Kind(
        load_selections, (".jsonl", ".jsonl.gz"),
        st.lists(st.fixed_dictionaries(
            {"rule_ids": st.lists(TEXT, max_size=3), "reward_a": FINITE, "reward_b": FINITE,
             "margin": FINITE, "preference": st.sampled_from([-1, 0, 1])},
            optional={"criterion": st.lists(FINITE, max_size=3) | st.none()}),
            min_size=1, max_size=5),
        {"id": BAD_IDS.filter(lambda v: not isinstance(v, str) or not v) | st.just(MISSING),
         "rule_ids": NON_LISTS | st.lists(NON_STRINGS, min_size=1, max_size=2),
         "reward_a": NOT_A_NUMBER, "margin": NOT_A_NUMBER | st.just(MISSING),
         "preference": JSON_VALUES.filter(lambda v: not is_preference(v)),
         "criterion": NON_LISTS.filter(lambda v: v is not None)
         | st.lists(NOT_A_NUMBER, min_size=1, max_size=2)}),
}

# (kind, suffix) for every format each loader reads, and for the config loader.
CASES = [(kind, suffix) for kind, spec in KINDS.items() for suffix in spec.suffixes]
JSONL_CASES = [(k, s) for k, s in CASES if s.startswith(".jsonl")]
JSON_CASES = [(k, s) for k, s in CASES if s == ".json"]


def with_ids(kind: str, rows: list) -> list:
    prefix = {"rules": "r", "prompts": "q"}.get(kind, "p")
    return [{"id": f"{prefix}{i}", **row} for i, row in enumerate(rows)]


def spoil(row: dict, field: str, value) -> dict:
    row = dict(row)
    if value is MISSING:
        row.pop(field, None)
    else:
        row[field] = value
    return row


def jsonl_lines(rows: list) -> list[bytes]:
    return [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in rows]


def join_lines(lines: list[bytes], newline: bytes = b"\n", bom: bool = False,
               gz: bool = False) -> bytes:
    data = (BOM if bom else b"") + b"".join(line + newline for line in lines)
    return gzip.compress(data) if gz else data


def file_bytes(kind: str, suffix: str, rows: list) -> bytes:
    """Rows in the format of `suffix`, written the ordinary way."""
    if suffix.startswith(".jsonl"):
        return join_lines(jsonl_lines(rows), gz=suffix.endswith(".gz"))
    if suffix == ".json":
        return json.dumps(rows, ensure_ascii=False, indent=1).encode("utf-8")
    if suffix == ".yaml":
        return yaml.safe_dump(rows, allow_unicode=True, sort_keys=False).encode("utf-8")
    if suffix == ".txt":
        return "".join(f"{r['text']}\n" for r in rows).encode("utf-8")
    raise AssertionError(suffix)


# Whole lines that are bad whatever the loader, each with its own way of breaking a reader.
BAD_LINES = {
    "deep row": ('{"id": "deep", "prompt": ' + DEEP + "}").encode(),  # RecursionError in json
    "deep": DEEP.encode(),
    "utf-8": b'{"id": "utf8", "prompt": "\xff\xfe"}',
    "cut": b'{"id": "cut", "prompt": "x',
    "long int": b'{"id": ' + b"7" * 5000 + b"}",  # past Python's int-from-text digit limit
    "nan": b"NaN",
    "infinities": b"[Infinity, -Infinity]",
}
# One valid row (without its id) of each kind.
EXAMPLE_ROWS = {
    "pairs": {"prompt": "p", "response_a": "a", "response_b": "b", "label": 0},
    "preferences": {"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1.0},
    "prompts": {"prompt": "p"},
    "rules": {"text": "t"},
    "selections": {"rule_ids": ["r1"], "reward_a": 1.0, "reward_b": 0.5, "margin": 0.5,
                   "preference": 1},
}


# --- arbitrary bytes -----------------------------------------------------------------------

ANY_BYTES = (st.binary(max_size=200)
             | st.tuples(st.sampled_from([BOM, b"PAR1", b"\x1f\x8b\x08\x00", b"- ", b"{"]),
                         st.binary(max_size=200)).map(b"".join))


def config_loader(path):
    return Config.from_file(path)


LOADER_CASES = ([(KINDS[k].loader, s) for k, s in CASES]
                + [(config_loader, ".json"), (config_loader, ".yaml")])


@pytest.mark.parametrize("loader, suffix", LOADER_CASES,
                         ids=[f"{getattr(f, '__name__', f)}{s}" for f, s in LOADER_CASES])
@FUZZ
@given(data=ANY_BYTES)
@example(data=gzip.compress(b"{}")[:10] + b"\xff" * 30)  # a corrupted deflate stream
def test_arbitrary_bytes(loader, suffix, data):
    if suffix == ".yaml" and yaml is None:
        pytest.skip("needs PyYAML")
    outcome(loader, "input" + suffix, data)
    if suffix.endswith(".gz"):
        outcome(loader, "input" + suffix, gzip.compress(data))


# --- rows with wrong types -----------------------------------------------------------------

ROW_FIELDS = {"pairs": ("id", "prompt", "response_a", "response_b", "label", "chosen"),
              "preferences": ("prompt", "chosen", "rejected", "margin", "rule_ids",
                              "chosen_side", "label"),
              "prompts": ("id", "prompt"),
              "rules": ("id", "text", "category", "rules"),
              "selections": ("id", "rule_ids", "criterion", "reward_a", "reward_b", "margin",
                             "preference")}


@pytest.mark.parametrize("kind, suffix", [c for c in CASES if c[1] not in (".parquet", ".txt")])
@FUZZ
@given(data=st.data())
def test_rows_of_any_types(kind, suffix, data):
    """Rows holding the loader's columns with values of any JSON type, or not objects at all;
    whole documents that are not lists."""
    if suffix == ".yaml" and yaml is None:
        pytest.skip("needs PyYAML")
    row = st.dictionaries(st.sampled_from(ROW_FIELDS[kind]) | TEXT, JSON_VALUES, max_size=6)
    rows = data.draw(st.lists(row | JSON_VALUES, max_size=5))
    if suffix.startswith(".jsonl"):
        body = join_lines(jsonl_lines(rows), gz=suffix.endswith(".gz"))
    elif suffix == ".json":
        document = data.draw(st.sampled_from([rows, {"rules": rows}, rows[:1] and rows[0]]))
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    else:
        body = yaml.safe_dump(rows, allow_unicode=True, sort_keys=False).encode("utf-8")
    outcome(KINDS[kind].loader, "input" + suffix, body)


# --- one bad row among good ones: named by its line or index -------------------------------


@pytest.mark.parametrize("kind, suffix", JSONL_CASES)
@FUZZ
@given(data=st.data())
def test_a_bad_jsonl_line_is_named(kind, suffix, data):
    spec = KINDS[kind]
    rows = with_ids(kind, data.draw(spec.rows))
    index = data.draw(st.integers(0, len(rows) - 1))
    lines = jsonl_lines(rows)
    if data.draw(st.booleans()):
        lines[index] = data.draw(st.sampled_from(list(BAD_LINES.values())))
    else:
        field = data.draw(st.sampled_from(sorted(spec.bad)))
        lines[index] = jsonl_lines([spoil(rows[index], field, data.draw(spec.bad[field]))])[0]
    # Blank lines before some rows: they are counted, so the number is the one an editor shows.
    blanks = data.draw(st.lists(BLANK, min_size=len(lines), max_size=len(lines)))
    spaced, number = [], None
    for i, (blank, line) in enumerate(zip(blanks, lines)):
        if blank != "":
            spaced.append(blank.encode())
        spaced.append(line)
        if i == index:
            number = len(spaced)
    newline = data.draw(st.sampled_from([b"\n", b"\r\n"]))
    body = join_lines(spaced, newline, bom=data.draw(st.booleans()), gz=suffix.endswith(".gz"))
    assert_names(outcome(spec.loader, "input" + suffix, body), f"line {number}")


@pytest.mark.parametrize("kind, suffix", JSONL_CASES)
@pytest.mark.parametrize("line", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_each_bad_line_is_named(kind, suffix, line):
    lines = jsonl_lines(with_ids(kind, [EXAMPLE_ROWS[kind]] * 2))
    lines.insert(1, line)
    body = join_lines(lines, gz=suffix.endswith(".gz"))
    assert_names(outcome(KINDS[kind].loader, "input" + suffix, body), "line 2")


@pytest.mark.parametrize("kind, suffix", JSON_CASES)
@FUZZ
@given(data=st.data())
def test_a_bad_json_row_is_named(kind, suffix, data):
    spec = KINDS[kind]
    rows = with_ids(kind, data.draw(spec.rows))
    index = data.draw(st.integers(0, len(rows) - 1))
    field = data.draw(st.sampled_from(sorted(spec.bad)))
    rows[index] = spoil(rows[index], field, data.draw(spec.bad[field]))
    body = json.dumps(rows, ensure_ascii=False, indent=1)
    if data.draw(st.booleans()):
        body = body.replace("\n", "\r\n")
    assert_names(outcome(spec.loader, "input" + suffix, body.encode("utf-8")),
                 f"{spec.json_position} {index}")


# --- a BOM, CRLF and blank lines change nothing --------------------------------------------


@pytest.mark.parametrize("kind, suffix", [c for c in CASES if c[1] != ".parquet"])
@FEW
@given(data=st.data())
def test_bom_crlf_and_blank_lines_load_as_if_absent(kind, suffix, data):
    if suffix == ".yaml" and yaml is None:
        pytest.skip("needs PyYAML")
    spec = KINDS[kind]
    rows = with_ids(kind, data.draw(spec.rows))
    plain = file_bytes(kind, suffix, rows)
    if suffix.endswith(".gz"):
        plain = gzip.decompress(plain)
    lines = plain.split(b"\n")
    # Blank lines only where lines are rows (JSONL, a text pool); elsewhere only the line
    # endings change.
    blanks = data.draw(st.lists(BLANK, min_size=len(lines), max_size=len(lines)))
    if suffix.startswith(".jsonl") or suffix == ".txt":
        lines = [part for blank, line in zip(blanks, lines)
                 for part in ([blank.encode()] if blank else []) + [line]]
    odd = BOM + b"\r\n".join(lines)
    if suffix.endswith(".gz"):
        plain, odd = gzip.compress(plain), gzip.compress(odd)
    with tempfile.TemporaryDirectory() as folder:
        expected = load_bytes(spec.loader, folder, "input" + suffix, plain)
        assert not isinstance(expected, Refused), expected
        assert load_bytes(spec.loader, folder, "input" + suffix, odd) == expected


# --- deep nesting, huge and non-finite numbers, as whole documents -------------------------


@pytest.mark.parametrize("kind, suffix", JSON_CASES + [("rules", ".yaml")])
@pytest.mark.parametrize("document", [DEEP, "[" + "7" * 5000 + "]", "NaN", "-Infinity",
                                      str(10**400)])
def test_odd_json_documents(kind, suffix, document):
    if suffix == ".yaml" and yaml is None:
        pytest.skip("needs PyYAML")
    assert isinstance(outcome(KINDS[kind].loader, "input" + suffix, document.encode()), Refused)


@pytest.mark.parametrize("kind", ["selections", "preferences"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", str(10**400), "1e400"])
def test_non_finite_numbers_are_refused_with_their_line(kind, value):
    lines = jsonl_lines(with_ids(kind, [EXAMPLE_ROWS[kind]] * 2))
    lines[1] = lines[1].replace(b'"margin": ', b'"margin": ' + value.encode() + b', "x": ')
    result = outcome(KINDS[kind].loader, "input.jsonl", join_lines(lines))
    assert_names(result, "line 2")
    assert "margin" in result.message


@pytest.mark.parametrize("field, value", [
    ("preference", 1.0), ("preference", True), ("reward_a", None), ("criterion", "x"),
    ("criterion", [float("nan")]), ("criterion", [10**400]), ("criterion", [True])])
def test_selection_fields_of_the_wrong_type(field, value):
    rows = with_ids("selections", [EXAMPLE_ROWS["selections"]] * 2)
    rows[1] = {**rows[1], field: value}
    result = outcome(load_selections, "input.jsonl", join_lines(jsonl_lines(rows)))
    assert_names(result, "line 2")
    assert field in result.message


# --- gzip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pairs", "rules", "selections", "prompts"])
@FUZZ
@given(data=st.data())
def test_truncated_or_corrupted_gzip(kind, data):
    spec = KINDS[kind]
    whole = file_bytes(kind, ".jsonl.gz", with_ids(kind, data.draw(spec.rows)))
    cut = data.draw(st.integers(0, len(whole) - 1))
    assert isinstance(outcome(spec.loader, "input.jsonl.gz", whole[:cut]), Refused)
    flipped = bytearray(whole)
    flipped[cut] ^= data.draw(st.integers(1, 255))
    outcome(spec.loader, "input.jsonl.gz", bytes(flipped))


# --- Parquet -------------------------------------------------------------------------------

if pa is not None:
    COLUMN_TYPES = [
        (pa.string(), TEXT), (pa.int64(), st.integers(-2**63, 2**63 - 1)),
        (pa.float64(), st.floats()), (pa.bool_(), st.booleans()),
        (pa.binary(), st.binary(max_size=8)), (pa.list_(pa.string()), st.lists(TEXT, max_size=2)),
        (pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
         st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "x"]),
                                         "content": TEXT}), max_size=2)),
    ]


@pytest.mark.skipif(pa is None, reason="needs pyarrow")
@pytest.mark.parametrize("kind", ["pairs", "preferences", "prompts"])
@FUZZ
@given(data=st.data())
def test_parquet_columns_of_any_types(kind, data):
    rows = data.draw(st.integers(0, 4))
    names = data.draw(st.lists(st.sampled_from(ROW_FIELDS[kind]) | TEXT, unique=True,
                               max_size=6))
    columns = {}
    for name in names:
        arrow_type, values = data.draw(st.sampled_from(COLUMN_TYPES))
        cells = data.draw(st.lists(values | st.none(), min_size=rows, max_size=rows))
        columns[name] = pa.array(cells, type=arrow_type)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "made.parquet"
        pq.write_table(pa.table(columns), source)
        body = source.read_bytes()
    outcome(KINDS[kind].loader, "input.parquet", body)
    cut = data.draw(st.integers(0, len(body) - 1))
    assert isinstance(outcome(KINDS[kind].loader, "input.parquet", body[:cut]), Refused)


# --- YAML ----------------------------------------------------------------------------------

# YAML whose constructors raise plain Python errors, or nest past the recursion limit.
ODD_YAML = [
    "x: 2001-02-30\n",  # a date out of range: ValueError
    "x: !!timestamp x\n",  # AttributeError inside PyYAML
    "x: !!bool maybe\n",  # KeyError inside PyYAML
    "x: !!int x\n", "x: !!float x\n",
    "x: " + "1" * 5000 + "\n",  # an int past the digit limit
    "x: !!binary '!!'\n", "x: !!python/object:os.system x\n",
    DEEP, "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "- " * 3000 + "x\n",
    "a: &a [*a]\nb: *a\n",
    "1: a\nx: b\npairs: c\n",  # keys of mixed types
    "pairs: p.jsonl\nselect: {1: 2, k: 3}\n",
    "\tpairs: x\n", "pairs: \x07\n", "pairs: [\n",
]


@pytest.mark.skipif(yaml is None, reason="needs PyYAML")
@pytest.mark.parametrize("loader", [KINDS["rules"].loader, config_loader])
@pytest.mark.parametrize("document", ODD_YAML)
def test_odd_yaml(loader, document):
    name = "input.yaml"
    outcome(loader, name, document.encode("utf-8"))
    outcome(loader, name, document.replace("x:", "- id: x\n  text:").encode("utf-8"))


# --- the pipeline config -------------------------------------------------------------------

CONFIG_KEYS = ("pairs", "rules", "run_dir", "new_pairs", "eval", "judge", "select", "adapter",
               "rm", "evaluation")
CONFIGS = st.dictionaries(st.sampled_from(CONFIG_KEYS) | TEXT | st.integers(),
                          JSON_VALUES | st.dictionaries(TEXT | st.integers(), JSON_VALUES,
                                                        max_size=3), max_size=6)
VALID_CONFIGS = st.fixed_dictionaries(
    {"pairs": WORDS},
    optional={"rules": WORDS, "run_dir": WORDS, "eval": WORDS,
              "select": st.fixed_dictionaries({}, optional={"k": st.integers(1, 9)})})


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@FUZZ
@given(config=CONFIGS)
def test_config_of_any_types(suffix, config):
    if suffix == ".yaml":
        if yaml is None:
            pytest.skip("needs PyYAML")
        body = yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
    else:
        body = json.dumps({str(k): v for k, v in config.items()}, ensure_ascii=False)
    outcome(config_loader, "config" + suffix, body.encode("utf-8"))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@FEW
@given(config=VALID_CONFIGS)
@example(config={"pairs": "p.jsonl"})
def test_config_with_bom_and_crlf_loads_as_if_absent(suffix, config):
    if suffix == ".yaml" and yaml is None:
        pytest.skip("needs PyYAML")
    text = (yaml.safe_dump(config, allow_unicode=True, sort_keys=False) if suffix == ".yaml"
            else json.dumps(config, ensure_ascii=False, indent=1))
    plain = text.encode("utf-8")
    with tempfile.TemporaryDirectory() as folder:
        expected = load_bytes(config_loader, folder, "config" + suffix, plain)
        odd = BOM + plain.replace(b"\n", b"\r\n")
        assert load_bytes(config_loader, folder, "config" + suffix, odd) == expected
