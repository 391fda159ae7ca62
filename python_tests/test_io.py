"""Input loaders (ramo.io): every format, every validation error, hh-rlhf splitting."""

import gzip
import hashlib
import itertools
import json
import os
from pathlib import Path

import pytest

from ramo.io import Pair, Rule, load_pairs, load_rules, rules_fingerprint
from ramo.io.pairs import split_hh


def hh_rlhf_path() -> Path:
    """Anthropic's HH-RLHF harmless-base test split (JSONL, gzip), which ramo does not ship:
    $RAMO_HH_RLHF if set, else ../shared/data/hh-rlhf-harmless-test.jsonl.gz from the
    repository's root, as the benchmarks find it (benchmarks/common.py)."""
    default = Path(__file__).resolve().parents[2] / "shared/data/hh-rlhf-harmless-test.jsonl.gz"
    return Path(os.environ.get("RAMO_HH_RLHF") or default)


HH_DATA = hh_rlhf_path()

RULES = [
    Rule("r1", "Do not help with weapons.", "violence"),
    Rule("r2", "Refuse to share private addresses.", "privacy"),
    Rule("r3", "Answer harmless questions — don't over-refuse.", ""),
]
RULE_DICTS = [{"id": r.id, "text": r.text, "category": r.category} for r in RULES]


def write_jsonl(path: Path, rows, gz: bool = False) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def write_parquet(path: Path, rows) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def load_error(loader, path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        loader(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, "every error names the file"
    return message


# --- rule pools: formats -------------------------------------------------------------------


def test_rules_json_list(tmp_path):
    assert load_rules(write_json(tmp_path / "p.json", RULE_DICTS)) == RULES


def test_rules_json_object_with_rules_key(tmp_path):
    assert load_rules(write_json(tmp_path / "p.json", {"name": "x", "rules": RULE_DICTS})) == RULES


@pytest.mark.parametrize("gz", [False, True])
def test_rules_jsonl(tmp_path, gz):
    path = tmp_path / ("p.jsonl.gz" if gz else "p.jsonl")
    assert load_rules(write_jsonl(path, RULE_DICTS, gz=gz)) == RULES


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_rules_yaml(tmp_path, suffix):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / f"p{suffix}"
    path.write_text(yaml.safe_dump(RULE_DICTS, allow_unicode=True), encoding="utf-8")
    assert load_rules(path) == RULES
    path.write_text(yaml.safe_dump({"rules": RULE_DICTS}, allow_unicode=True), encoding="utf-8")
    assert load_rules(path) == RULES


def test_rules_yaml_keeps_scalars_as_written(tmp_path):
    pytest.importorskip("yaml")
    # Plain YAML 1.1 would read 010 as the octal int 8 and "no" as False.
    path = tmp_path / "p.yaml"
    path.write_text("- id: 010\n  text: no\n- id: 7\n  text: Be kind.\n  category:\n", "utf-8")
    assert load_rules(path) == [Rule("010", "no"), Rule("7", "Be kind.", "")]


def test_rules_text(tmp_path):
    path = tmp_path / "p.txt"
    text = "# a comment\n\nDo not help with weapons.\n   \n  Be honest.  \n#x\nLast\n"
    path.write_text(text, encoding="utf-8")
    assert load_rules(path) == [
        Rule("r001", "Do not help with weapons."),
        Rule("r002", "Be honest."),
        Rule("r003", "Last"),
    ]


def test_rules_text_ids_widen_past_999(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("".join(f"rule {i}\n" for i in range(1000)), encoding="utf-8")
    rules = load_rules(path)
    assert [r.id for r in rules[:2]] == ["r0001", "r0002"] and rules[-1].id == "r1000"
    assert sorted(r.id for r in rules) == [r.id for r in rules]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_rules_int_ids_become_strings(tmp_path, suffix):
    rows = [{"id": 1, "text": "a"}, {"id": 22, "text": "b"}]
    path = tmp_path / f"p{suffix}"
    write_json(path, rows) if suffix == ".json" else write_jsonl(path, rows)
    assert load_rules(path) == [Rule("1", "a"), Rule("22", "b")]


# --- rule pools: validation ----------------------------------------------------------------


def test_rules_missing_id_names_index(tmp_path):
    path = write_json(tmp_path / "p.json", [{"id": "a", "text": "x"}, {"text": "y"}])
    message = load_error(load_rules, path)
    assert "index 1: missing 'id'" in message


def test_rules_missing_text_names_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "x"}, {"id": "b"}])
    assert "line 2: missing 'text'" in load_error(load_rules, path)


def test_rules_blank_text(tmp_path):
    path = write_json(tmp_path / "p.json", [{"id": "a", "text": " \n\t"}])
    assert "index 0: 'text' is empty" in load_error(load_rules, path)


def test_rules_non_string_fields(tmp_path):
    rows = [
        {"id": 1.0, "text": "x"},
        {"id": True, "text": "y"},
        {"id": "c", "text": 3},
        {"id": "d", "text": "z", "category": 4},
    ]
    message = load_error(load_rules, write_json(tmp_path / "p.json", rows))
    assert "index 0: 'id' must be a string or an integer, got float" in message
    assert "index 1: 'id' must be a string or an integer, got bool" in message
    assert "index 2: 'text' must be a string, got int" in message
    assert "index 3: 'category' must be a string, got int" in message


def test_rules_duplicate_ids_name_both_positions(tmp_path):
    rows = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}]
    message = load_error(load_rules, write_json(tmp_path / "p.json", rows))
    assert "index 2: duplicate id 'a' (first at index 0)" in message
    message = load_error(load_rules, write_jsonl(tmp_path / "p.jsonl", rows))
    assert "line 3: duplicate id 'a' (first at line 1)" in message


def test_rules_int_and_string_id_collide(tmp_path):
    rows = [{"id": 1, "text": "x"}, {"id": "1", "text": "y"}]
    message = load_error(load_rules, write_json(tmp_path / "p.json", rows))
    assert "index 1: duplicate id '1' (first at index 0)" in message


def test_rules_unknown_suffix(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,text\n", encoding="utf-8")
    assert "unknown rule pool format" in load_error(load_rules, path)


@pytest.mark.parametrize(
    "name, content",
    [
        ("p.json", "[]"),
        ("p.json", '{"rules": []}'),
        ("p.jsonl", "\n\n"),
        ("p.txt", "# only a comment\n\n"),
        ("p.yaml", ""),
    ],
)
def test_rules_empty_pool(tmp_path, name, content):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert "empty rule pool" in load_error(load_rules, path)


def test_rules_bad_shapes(tmp_path):
    message = load_error(load_rules, write_json(tmp_path / "a.json", {"items": []}))
    assert "expected a list of rules or an object with a 'rules' list, got object" in message
    message = load_error(load_rules, write_json(tmp_path / "b.json", ["just text"]))
    assert "index 0: expected an object with 'id' and 'text', got str" in message


def test_rules_malformed_json_and_jsonl(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('[\n{"id": "a", "text": "x"},\n{"id": "b" "text": "y"}\n]', encoding="utf-8")
    assert "line 3: malformed JSON" in load_error(load_rules, path)
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b",\n', encoding="utf-8")
    assert "line 2: malformed JSON" in load_error(load_rules, path)


def test_rules_malformed_yaml(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "p.yaml"
    path.write_text("- id: a\n  text: x\n- id: [b\n", encoding="utf-8")
    message = load_error(load_rules, path)
    assert "malformed YAML" in message and "\n" not in message  # one line, as the CLI prints
    assert "line 4, column 1: malformed YAML: while parsing a flow sequence" in message, message


def test_rules_error_lists_every_problem_of_a_row(tmp_path):
    message = load_error(load_rules, write_json(tmp_path / "p.json", [{"category": 1}]))
    assert "index 0: missing 'id'; missing 'text'; 'category' must be a string, got int" in message


# --- rules_fingerprint ---------------------------------------------------------------------


def test_fingerprint_is_pinned():
    # Stores are keyed by this value: changing it orphans every existing store. The scheme is
    # sha256 over this canonical JSON (sorted keys, no spaces, UTF-8, non-ASCII unescaped).
    canonical = (
        '{"format":"ramo-rules-v1","rules":[["r1","Be safe."],["r2","Don\'t lie — ever."]]}'
    )
    expected = "abe2b17eb6df165df59181deb6543ef6a9e287930ec1f0220d0c74345c435698"
    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == expected
    pool = [Rule("r1", "Be safe."), Rule("r2", "Don't lie — ever.")]
    assert rules_fingerprint(pool) == expected


def test_fingerprint_sensitivity():
    base = rules_fingerprint(RULES)
    assert rules_fingerprint([Rule(r.id, r.text, "other") for r in RULES]) == base
    assert rules_fingerprint(list(reversed(RULES))) != base
    assert rules_fingerprint([Rule("x", RULES[0].text), *RULES[1:]]) != base
    assert rules_fingerprint([Rule("r1", RULES[0].text + " "), *RULES[1:]]) != base
    # Boundaries are unambiguous: moving text between id and text changes the digest.
    assert rules_fingerprint([Rule("ab", "c")]) != rules_fingerprint([Rule("a", "bc")])


def test_fingerprint_same_pool_from_any_format(tmp_path):
    from_json = load_rules(write_json(tmp_path / "p.json", RULE_DICTS))
    from_jsonl = load_rules(write_jsonl(tmp_path / "p.jsonl", RULE_DICTS))
    assert rules_fingerprint(from_json) == rules_fingerprint(from_jsonl) == rules_fingerprint(RULES)


# --- pairs: formats ------------------------------------------------------------------------

AB_PAIRS = [
    Pair("p0", "How do I bake bread?", "Knead, rise, bake.", "No.", 0),
    Pair("p1", "Où est la gare ?", "Je ne sais pas.", "À gauche.", 1),
    Pair("p2", "Hi", "Hello", "Hey", None),
]
AB_COLUMNS = ("id", "prompt", "response_a", "response_b", "label")
AB_ROWS = [{name: getattr(p, name) for name in AB_COLUMNS} for p in AB_PAIRS]


def write_pairs(tmp_path: Path, fmt: str, rows) -> Path:
    if fmt == "jsonl":
        return write_jsonl(tmp_path / "p.jsonl", rows)
    if fmt == "jsonl.gz":
        return write_jsonl(tmp_path / "p.jsonl.gz", rows, gz=True)
    if fmt == "json":
        return write_json(tmp_path / "p.json", rows)
    return write_parquet(tmp_path / "p.parquet", rows)


FORMATS = ["jsonl", "jsonl.gz", "json", "parquet"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pairs_round_trip(tmp_path, fmt):
    assert load_pairs(write_pairs(tmp_path, fmt, AB_ROWS)) == AB_PAIRS


@pytest.mark.parametrize("fmt", FORMATS)
def test_pairs_chosen_rejected_map_to_a_b_with_label_0(tmp_path, fmt):
    rows = [{"id": 7, "prompt": "q", "chosen": "good", "rejected": "bad", "subset": "donotanswer"}]
    expected = Pair("7", "q", "good", "bad", 0, {"subset": "donotanswer"})
    assert load_pairs(write_pairs(tmp_path, fmt, rows)) == [expected]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pairs_missing_id_is_row_number(tmp_path, fmt):
    rows = [{k: v for k, v in r.items() if k != "id"} for r in AB_ROWS]
    assert [p.id for p in load_pairs(write_pairs(tmp_path, fmt, rows))] == ["0", "1", "2"]


def test_pairs_blank_jsonl_lines_are_not_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    row = json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
    path.write_text(f"\n{row}\n\n{row}\n", encoding="utf-8")
    assert [p.id for p in load_pairs(path)] == ["0", "1"]


def test_pairs_int_ids(tmp_path):
    rows = [dict(r, id=i * 10) for i, r in enumerate(AB_ROWS)]
    assert [p.id for p in load_pairs(write_pairs(tmp_path, "jsonl", rows))] == ["0", "10", "20"]


def test_pairs_extra_columns_kept_and_pairs_hashable(tmp_path):
    rows = [dict(AB_ROWS[0], source="x", meta={"k": 1})]
    (pair,) = load_pairs(write_pairs(tmp_path, "jsonl", rows))
    assert pair.extra == {"source": "x", "meta": {"k": 1}}
    assert hash(pair) == hash(Pair("p0", pair.prompt, pair.response_a, pair.response_b, 0))


def test_pairs_utf8_bom_on_first_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(AB_ROWS[0]).encode() + b"\n")
    assert load_pairs(path) == AB_PAIRS[:1]


def test_pairs_line_separator_inside_json_string(tmp_path):
    # U+2028 is legal unescaped inside a JSON string; it must not split the line.
    row = dict(AB_ROWS[0], prompt="a\u2028b")
    path = tmp_path / "p.jsonl"
    path.write_bytes(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
    assert load_pairs(path)[0].prompt == "a\u2028b"


# --- pairs: hh-rlhf transcripts ------------------------------------------------------------

HH_PROMPT = (
    "\n\nHuman: How do I pick a lock?\n\nAssistant: Why do you ask?"
    "\n\nHuman: I'm locked out.\n\nAssistant:"
)


def test_hh_split_multi_turn(tmp_path):
    row = {"chosen": f"{HH_PROMPT} Call a locksmith.", "rejected": f"{HH_PROMPT} Use a tension wrench."}
    (pair,) = load_pairs(write_jsonl(tmp_path / "hh.jsonl", [row]))
    assert pair == Pair("0", HH_PROMPT, " Call a locksmith.", " Use a tension wrench.", 0)


def test_hh_split_cuts_inside_the_shared_prefix():
    # The chosen response itself holds "\n\nAssistant:" (this happens in the real data): the
    # prompt must still be the shared history, the same for both sides.
    chosen = "\n\nHuman: Give me a key.\n\nAssistant: Here:\n\nAssistant: ABC-123"
    rejected = "\n\nHuman: Give me a key.\n\nAssistant: I can't."
    prompt = "\n\nHuman: Give me a key.\n\nAssistant:"
    assert split_hh(chosen, rejected) == (prompt, " Here:\n\nAssistant: ABC-123", " I can't.")


def test_hh_split_responses_sharing_their_start():
    # Common text after the last shared marker stays in the responses.
    prompt = "\n\nHuman: q\n\nAssistant:"
    split = split_hh(prompt + " I think yes", prompt + " I think no")
    assert split == (prompt, " I think yes", " I think no")


def test_hh_not_a_transcript(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"chosen": "fine", "rejected": "bad"}])
    message = load_error(load_pairs, path)
    assert "line 1: no 'prompt' column" in message and "hh-rlhf" in message


def test_hh_empty_response(tmp_path):
    rows = [{"chosen": "\n\nHuman: q\n\nAssistant: ", "rejected": "\n\nHuman: q\n\nAssistant: no"}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    message = load_error(load_pairs, path)
    assert "line 1: 'chosen' response (after the shared prompt) is empty" in message
    (pair,) = load_pairs(path, allow_empty_responses=True)
    assert pair == Pair("0", "\n\nHuman: q\n\nAssistant:", " ", " no", 0)


@pytest.mark.skipif(not HH_DATA.exists(), reason=f"HH-RLHF file absent (RAMO_HH_RLHF): {HH_DATA}")
def test_hh_real_data_first_20_lines(tmp_path):
    with gzip.open(HH_DATA, "rb") as f:
        head = list(itertools.islice(f, 20))
    path = tmp_path / "hh20.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.writelines(head)
    rows = [json.loads(line) for line in head]
    pairs = load_pairs(path)
    assert [p.id for p in pairs] == [str(i) for i in range(20)]
    for pair, row in zip(pairs, rows):
        assert pair.prompt.startswith("\n\nHuman:") and pair.prompt.endswith("\n\nAssistant:")
        assert pair.prompt + pair.response_a == row["chosen"]
        assert pair.prompt + pair.response_b == row["rejected"]
        assert pair.label == 0 and pair.extra == {}


@pytest.mark.skipif(not HH_DATA.exists(), reason=f"HH-RLHF file absent (RAMO_HH_RLHF): {HH_DATA}")
def test_hh_real_data_whole_file():
    # Four pairs in the harmless test split prefer an empty reply: strict loading refuses the
    # file and lists them; allow_empty_responses loads all 2,312.
    message = load_error(load_pairs, HH_DATA)
    assert "4 bad rows:" in message
    for line in (87, 517, 926, 1104):
        assert f"line {line}: 'chosen' response (after the shared prompt) is empty" in message
    pairs = load_pairs(HH_DATA, allow_empty_responses=True)
    assert len(pairs) == 2312 and all(p.prompt.endswith("\n\nAssistant:") for p in pairs)


# --- pairs: validation ---------------------------------------------------------------------


def test_pairs_malformed_json_line(tmp_path):
    path = tmp_path / "p.jsonl"
    good = json.dumps(AB_ROWS[0])
    path.write_text(f"{good}\n{{not json}}\n{good}\n", encoding="utf-8")
    assert "line 2: malformed JSON" in load_error(load_pairs, path)


def test_pairs_invalid_utf8_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(json.dumps(AB_ROWS[0]).encode() + b"\n" + b'{"prompt": "\xff"}\n')
    assert "line 2: not valid UTF-8" in load_error(load_pairs, path)


def test_pairs_missing_columns(tmp_path):
    rows = [{"prompt": "q", "response_a": "a"}, {"prompt": "q"}, {"chosen": "a", "prompt": "q"}]
    message = load_error(load_pairs, write_jsonl(tmp_path / "p.jsonl", rows))
    assert "line 1: missing column(s) 'response_b'" in message
    assert "line 2: missing columns: expected 'prompt', 'response_a', 'response_b'" in message
    assert "line 3: missing column(s) 'rejected'" in message


def test_pairs_non_string_fields(tmp_path):
    rows = [
        dict(AB_ROWS[0], prompt=None),
        dict(AB_ROWS[1], response_b=5),
        {"chosen": ["a"], "rejected": "b", "prompt": "q"},
    ]
    message = load_error(load_pairs, write_jsonl(tmp_path / "p.jsonl", rows))
    assert "line 1: 'prompt' must be a string, got null" in message
    assert "line 2: 'response_b' must be a string, got int" in message
    # A list is taken for TRL's conversational format, which needs every text field as messages.
    assert ("line 3: 'prompt', 'rejected' are text but other columns are lists of messages"
            in message)


def test_pairs_parquet_null_field_names_row(tmp_path):
    rows = [AB_ROWS[0], dict(AB_ROWS[1], response_a=None)]
    message = load_error(load_pairs, write_parquet(tmp_path / "p.parquet", rows))
    assert "row 1: 'response_a' must be a string, got null" in message


def test_pairs_empty_prompt_or_response(tmp_path):
    rows = [
        dict(AB_ROWS[0], prompt="  "),
        dict(AB_ROWS[1], response_a="\n"),
        {"prompt": "q", "chosen": "a", "rejected": " "},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    message = load_error(load_pairs, path)
    assert "line 1: 'prompt' is empty" in message
    assert "line 2: 'response_a' is empty" in message
    assert "line 3: 'rejected' is empty" in message
    # allow_empty_responses relaxes responses only, never prompts.
    message = load_error(load_pairs, path, allow_empty_responses=True)
    assert message == f"{path}: line 1: 'prompt' is empty"


def test_pairs_duplicate_ids_name_both_lines(tmp_path):
    rows = [AB_ROWS[0], AB_ROWS[1], dict(AB_ROWS[2], id="p0")]
    message = load_error(load_pairs, write_jsonl(tmp_path / "p.jsonl", rows))
    assert "line 3: duplicate id 'p0' (first at line 1)" in message
    message = load_error(load_pairs, write_json(tmp_path / "p.json", rows))
    assert "row 2: duplicate id 'p0' (first at row 0)" in message


def test_pairs_int_and_string_id_collide(tmp_path):
    rows = [dict(AB_ROWS[0], id=3), dict(AB_ROWS[1], id="3")]
    message = load_error(load_pairs, write_jsonl(tmp_path / "p.jsonl", rows))
    assert "line 2: duplicate id '3' (first at line 1)" in message


def test_pairs_bad_labels_and_ids(tmp_path):
    rows = [
        dict(AB_ROWS[0], label=2),
        dict(AB_ROWS[1], label=True),
        dict(AB_ROWS[2], label=1.0),
        dict(AB_ROWS[0], id=1.5),
    ]
    message = load_error(load_pairs, write_jsonl(tmp_path / "p.jsonl", rows))
    assert "line 1: 'label' must be 0, 1 or null, got 2" in message
    assert "line 2: 'label' must be 0, 1 or null, got True" in message
    assert "line 3: 'label' must be 0, 1 or null, got 1.0" in message
    assert "line 4: 'id' must be a string or an integer, got float" in message


def test_pairs_ambiguous_and_non_object_rows(tmp_path):
    rows = [dict(AB_ROWS[0], chosen="x"), ["not", "an", "object"]]
    message = load_error(load_pairs, write_jsonl(tmp_path / "p.jsonl", rows))
    assert "line 1: ambiguous row" in message and "line 2: expected an object, got list" in message


def test_pairs_error_lists_first_five_bad_lines(tmp_path):
    rows = [AB_ROWS[0]] + [dict(AB_ROWS[1], id=f"x{i}", prompt="") for i in range(7)]
    message = load_error(load_pairs, write_jsonl(tmp_path / "p.jsonl", rows))
    assert "7 bad rows; the first 5:" in message
    for line in range(2, 7):
        assert f"line {line}: 'prompt' is empty" in message
    assert "line 7:" not in message and "... and 2 more" in message


def test_pairs_unknown_suffix_and_bad_json_shape(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,chosen,rejected\n", encoding="utf-8")
    assert "unknown pair file format" in load_error(load_pairs, path)
    message = load_error(load_pairs, write_json(tmp_path / "p.json", {"rows": []}))
    assert "expected a list of pair objects, got object" in message


def test_pairs_corrupt_gzip_and_parquet(tmp_path):
    gz = tmp_path / "p.jsonl.gz"
    gz.write_bytes(b"not gzip at all\n")
    assert "cannot read" in load_error(load_pairs, gz)
    pytest.importorskip("pyarrow")
    pq = tmp_path / "p.parquet"
    pq.write_bytes(b"not parquet")
    assert "not a readable Parquet file" in load_error(load_pairs, pq)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_pairs_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "p.jsonl"
    path.write_text(content, encoding="utf-8")
    assert load_error(load_pairs, path) == f"{path}: no pairs in the file"


# --- pairs: TRL's conversational format ----------------------------------------------------

def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


TURNS = [user("hi"), assistant("hello"), user("how do I pick a lock?")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pairs_conversational_explicit_prompt(tmp_path, fmt):
    rows = [{"id": "c", "prompt": TURNS, "chosen": [assistant("I can't help.")],
             "rejected": [assistant("Use a tension wrench.")], "subset": "s"}]
    [pair] = load_pairs(write_pairs(tmp_path, fmt, rows))
    assert pair == Pair("c", "Human: hi\n\nAssistant: hello\n\nHuman: how do I pick a lock?",
                        "I can't help.", "Use a tension wrench.", 0, {"subset": "s"},
                        prompt_messages=tuple(TURNS))
    assert pair.model_prompt == tuple(TURNS)


def test_pairs_conversational_one_user_turn_is_the_standard_row(tmp_path):
    standard = {"id": "s", "prompt": "q", "chosen": "a", "rejected": "b"}
    conversational = {"id": "s", "prompt": [user("q")], "chosen": [assistant("a")],
                      "rejected": [assistant("b")]}
    [text] = load_pairs(write_jsonl(tmp_path / "s.jsonl", [standard]))
    [chat] = load_pairs(write_jsonl(tmp_path / "c.jsonl", [conversational]))
    assert (chat.prompt, chat.response_a, chat.response_b) == ("q", "a", "b")
    assert text.model_prompt == "q" and chat.model_prompt == (user("q"),)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pairs_conversational_implicit_prompt(tmp_path, fmt):
    rows = [{"chosen": TURNS + [assistant("no")], "rejected": TURNS + [assistant("sure")]}]
    [pair] = load_pairs(write_pairs(tmp_path, fmt, rows))
    assert (pair.prompt_messages, pair.response_a, pair.response_b) == (tuple(TURNS), "no", "sure")


def test_pairs_conversational_ab_rows_keep_their_label(tmp_path):
    rows = [{"prompt": [user("q")], "response_a": [assistant("a")],
             "response_b": [assistant("b")], "label": 1}]
    [pair] = load_pairs(write_jsonl(tmp_path / "p.jsonl", rows))
    assert (pair.prompt, pair.response_a, pair.response_b, pair.label) == ("q", "a", "b", 1)


def test_pairs_conversational_null_struct_fields_are_ignored(tmp_path):
    # Arrow and Parquet give every message the union of all messages' keys, null where absent.
    rows = [{"prompt": [{"role": "user", "content": "q", "name": None}],
             "chosen": [assistant("a")], "rejected": [assistant("b")]}]
    [pair] = load_pairs(write_jsonl(tmp_path / "p.jsonl", rows))
    assert pair.prompt_messages == (user("q"),)


BAD_CONVERSATIONS = [
    ({"prompt": "q", "chosen": [assistant("a")], "rejected": [assistant("b")]},
     "'prompt' is text but other columns are lists of messages"),
    ({"prompt": [{"role": "robot", "content": "q"}], "chosen": [assistant("a")],
      "rejected": [assistant("b")]}, "'prompt' message 0: 'role' must be one of"),
    ({"prompt": [user("q")], "chosen": [{"role": "assistant", "content": 3}],
      "rejected": [assistant("b")]}, "'chosen' message 0: 'content' must be a string, got int"),
    ({"prompt": [user("q")], "chosen": [dict(assistant("a"), tool_calls=[{"f": 1}])],
      "rejected": [assistant("b")]},
     "'chosen' message 0 has fields ramo does not read: tool_calls"),
    ({"prompt": [], "chosen": [assistant("a")], "rejected": [assistant("b")]},
     "'prompt' must be a non-empty list of messages, got list (empty)"),
    ({"prompt": [user("q")], "chosen": [assistant("a"), user("x")],
      "rejected": [assistant("b")]}, "'chosen' must be one assistant message, got 2 message(s)"),
    ({"prompt": [user("q")], "chosen": [user("a")], "rejected": [assistant("b")]},
     "'chosen' must be one assistant message, got 1 message(s) (user)"),
    ({"prompt": [user("q")], "chosen": ["a"], "rejected": [assistant("b")]},
     "'chosen' message 0 must be an object with 'role' and 'content', got str"),
    ({"chosen": [user("q"), assistant("a")], "rejected": [user("r"), assistant("b")]},
     "do not start with the same messages"),
    ({"chosen": [user("q"), assistant("a")], "rejected": [user("q"), assistant("a")]},
     "'chosen' ends where the shared prompt ends: no response"),
    ({"chosen": [user("q"), assistant("a"), user("more")],
      "rejected": [user("q"), assistant("b")]},
     "'chosen after the shared prompt' must be one assistant message, got 2"),
    ({"prompt": [user("   ")], "chosen": [assistant("a")], "rejected": [assistant("b")]},
     "'prompt' is empty"),
    ({"prompt": [user("q")], "chosen": [assistant("a")]}, "missing column(s) 'rejected'"),
]


@pytest.mark.parametrize("row, expected", BAD_CONVERSATIONS)
def test_pairs_conversational_errors_name_line_and_field(tmp_path, row, expected):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"},
                                              row])
    message = load_error(load_pairs, path)
    assert "line 2: " in message and expected in message, message


# --- pairs: datasets folders and Arrow / Parquet shards ------------------------------------

SHARD_ROWS = [{"id": f"p{i}", "prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"}
              for i in range(5)]


def test_pairs_from_a_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = SHARD_ROWS + [{"id": "c", "prompt": [user("q")], "chosen": [assistant("a")],
                          "rejected": [assistant("b")]}]
    for name, part in (("text", SHARD_ROWS), ("chat", rows[-1:])):
        datasets.Dataset.from_list(part).save_to_disk(tmp_path / name, num_shards=1)
        assert load_pairs(tmp_path / name) == load_pairs(write_jsonl(tmp_path / f"{name}.jsonl",
                                                                     part))
    sharded = tmp_path / "sharded"
    datasets.Dataset.from_list(SHARD_ROWS).save_to_disk(sharded, num_shards=2)
    assert [p.id for p in load_pairs(sharded)] == [r["id"] for r in SHARD_ROWS]
    splits = tmp_path / "dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(SHARD_ROWS),
                          "test": datasets.Dataset.from_list(SHARD_ROWS)}).save_to_disk(splits)
    message = load_error(load_pairs, splits)
    assert "a DatasetDict folder (splits: test, train); give one split's folder" in message
    assert [p.id for p in load_pairs(splits / "test")] == [r["id"] for r in SHARD_ROWS]


@pytest.mark.parametrize("kind", ["parquet", "arrow-stream", "arrow-file"])
def test_pairs_from_shards_in_name_order_errors_name_the_shard(tmp_path, kind):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    def write(path, rows):
        table = pa.Table.from_pylist(rows)
        if kind == "parquet":
            pq.write_table(table, path)
            return
        writer = ipc.new_stream if kind == "arrow-stream" else ipc.new_file
        with pa.OSFile(str(path), "wb") as sink, writer(sink, table.schema) as w:
            w.write_table(table)

    suffix = "parquet" if kind == "parquet" else "arrow"
    folder = tmp_path / "shards"
    folder.mkdir()
    write(folder / f"part-1.{suffix}", SHARD_ROWS[3:])
    write(folder / f"part-0.{suffix}", SHARD_ROWS[:3])
    (folder / "README.md").write_text("not a shard")
    assert [p.id for p in load_pairs(folder)] == [r["id"] for r in SHARD_ROWS]
    assert load_pairs(folder)[4].where == f"part-1.{suffix} row 1"
    write(folder / f"part-2.{suffix}", [dict(SHARD_ROWS[0], id="x", chosen="")])
    message = load_error(load_pairs, folder)
    assert f"part-2.{suffix} row 0: 'chosen' is empty" in message


def test_pairs_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "nor .parquet or .arrow files" in load_error(load_pairs, empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.arrow").write_bytes(b"not arrow")
    pytest.importorskip("pyarrow")
    assert "not a readable Arrow file" in load_error(load_pairs, bad)
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"_data_files": "x"}')
    assert "not a datasets state file" in load_error(load_pairs, state)


# --- prompts (ramo rl) ---------------------------------------------------------------------

def test_prompts_text_and_messages_with_their_columns(tmp_path):
    from ramo.io.prompts import Prompt, load_prompts

    rows = [{"id": 3, "prompt": "q", "kind": "should-refuse"},
            {"prompt": TURNS, "kind": "should-respond"}]
    loaded = load_prompts(write_jsonl(tmp_path / "p.jsonl", rows))
    assert loaded[0] == Prompt("3", "q", None, {"kind": "should-refuse"})
    assert loaded[1].messages == tuple(TURNS) and loaded[1].id == "1"
    assert loaded[1].text == conversation_text_of(TURNS)
    assert loaded[0].to_row() == {"id": "3", "kind": "should-refuse", "prompt": "q"}
    assert loaded[0].to_row(conversational=True)["prompt"] == [user("q")]
    assert loaded[1].to_row()["prompt"] == TURNS


def conversation_text_of(turns):
    from ramo.io.conversations import conversation_text

    return conversation_text(tuple(turns))


def test_prompts_errors_name_the_file_and_rows(tmp_path):
    from ramo.io.prompts import load_prompts

    rows = [{"prompt": ""}, {"text": "x"}, {"prompt": 5}, {"prompt": [user(3)]},
            {"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]
    message = load_error(load_prompts, write_jsonl(tmp_path / "p.jsonl", rows))
    for expected in ("line 1: 'prompt' is empty", "line 2: missing column 'prompt'",
                     "line 3: 'prompt' must be a string or a list of messages, got int",
                     "line 4: 'prompt' message 0: 'content' must be a string",
                     "line 6: duplicate id 'a' (first at line 5)"):
        assert expected in message
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    assert "no prompts in the file" in load_error(load_prompts, empty)
