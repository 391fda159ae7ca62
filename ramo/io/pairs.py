"""Preference pairs: the one pair type (`Pair`), loaded from JSONL, Parquet or JSON with
validation, or taken from memory (`as_pairs`). Every step of the method reads pairs as `Pair`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ramo.io.arrow import import_pyarrow
from ramo.io._problems import Problems, coerce_id, type_name
from ramo.io.conversations import (Messages, check_messages, conversation_text, response_of,
                                   split_conversations)
from ramo.io.jsonl import file_kind, read_json, read_jsonl

HH_ASSISTANT = "\n\nAssistant:"

# Longest suffixes first, so "x.jsonl.gz" is matched before anything shorter.
_KINDS = (
    (".jsonl.gz", "jsonl"),
    (".jsonl", "jsonl"),
    (".parquet", "parquet"),
    (".json", "json"),
)
_AB_COLUMNS = ("prompt", "response_a", "response_b")
_CR_COLUMNS = ("chosen", "rejected")


@dataclass(frozen=True)
class Pair:
    """One prompt with two responses.

    label: 0 when response_a is the preferred one, 1 when response_b is, None when unknown.
    extra: the row's other columns (e.g. RewardBench's "subset"), untouched. It takes part in
    equality but not in the hash, so pairs stay hashable.
    where: where the pair came from ("line 3" of a JSONL file, "row 0", "pair 'x'"), so a
    later check names the row the user wrote without reading the file again; not part of
    equality.
    prompt_messages: the prompt's messages when the row gave it as a conversation (TRL's
    conversational format), else None; `prompt` is then their `conversation_text`.
    """

    id: str
    prompt: str
    response_a: str
    response_b: str
    label: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    where: str | None = field(default=None, compare=False, repr=False)
    prompt_messages: Messages | None = field(default=None, hash=False, repr=False)

    @property
    def model_prompt(self) -> str | Messages:
        """The prompt as a reward model's input takes it (`ramo.tokenization.encode`): its
        messages when it came as a conversation, else its text."""
        return self.prompt_messages if self.prompt_messages is not None else self.prompt


def load_pairs(path: str | os.PathLike, *, allow_empty_responses: bool = False) -> list[Pair]:
    """Load preference pairs, in file order.

    Formats, chosen by suffix: .jsonl or .jsonl.gz (one object per line), .parquet, .json
    (a list of objects); or a folder: a Hugging Face `datasets` folder (`save_to_disk` of one
    split), or Parquet or Arrow shards (read in name order). Each row has either
      - `prompt`, `response_a`, `response_b`, and optionally `label` (0, 1 or null); or
      - `chosen`, `rejected`, and optionally `prompt`: response_a = chosen, response_b =
        rejected, label = 0. Without `prompt`, chosen and rejected are taken to be whole
        hh-rlhf transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ..."): the prompt is their shared
        prefix up to and including its last "\\n\\nAssistant:", the responses are the rest,
        so prompt + response_a == chosen exactly (see `split_hh`).
    In either form the text fields may instead be conversations, TRL's conversational format
    (see ramo.io.conversations): the prompt a list of {role, content} messages, each response
    one assistant message; without `prompt`, chosen and rejected whole conversations sharing
    their first messages (the implicit prompt). A row is all text or all messages.
    `id` is optional (a string or an integer, stored as a string); where it is missing the id
    is the 0-based row number as a string (blank JSONL lines are not rows). Other columns go
    to `Pair.extra`.

    Nothing is loaded if any row is bad, or if there is none: the ValueError names the file and lists up to the
    first 5 bad rows (JSONL: 1-based line numbers; JSON and Parquet: 0-based row numbers),
    each with its problems: malformed JSON, missing columns, non-string fields, an empty
    (whitespace-only) prompt or response, a bad label, a duplicate id (both rows named).

    allow_empty_responses: accept empty or whitespace-only responses (prompts must still be
    non-empty). hh-rlhf's harmless split has a few pairs whose preferred reply is silence.
    """
    problems = Problems(path)
    pairs = _checked(read_rows(path, problems), problems, allow_empty_responses)
    if not pairs:
        raise ValueError(f"{os.fspath(path)}: no pairs in the file")
    return pairs


def as_pairs(items: Iterable[Pair | Mapping[str, Any]], *,
             allow_empty_responses: bool = False) -> list[Pair]:
    """Pairs given in memory: `Pair`s as they are, mappings read as a file's rows are (the
    same columns, checks and id rule; a missing id is the position). ValueError names each
    bad item (up to 5) and whether ids repeat; nothing is returned half-checked."""
    def named(index: int, item: Any) -> str:
        pair_id = item.id if isinstance(item, Pair) else (
            item.get("id") if isinstance(item, Mapping) else None)
        return f"pair {pair_id!r}" if pair_id is not None else f"item {index}"

    return _checked(((named(i, item), item) for i, item in enumerate(items)), Problems("pairs"),
                    allow_empty_responses)


def _checked(rows: Iterable[tuple[str, Any]], problems: Problems,
             allow_empty: bool) -> list[Pair]:
    """The pairs of (where, row or Pair) items, each remembering where it came from; every
    bad row and repeated id goes to `problems`, which raises at the end if it has any."""
    pairs: list[Pair] = []
    for index, (where, row) in enumerate(rows):
        pair, issues = (row, []) if isinstance(row, Pair) else _pair_from_row(row, index,
                                                                               allow_empty)
        if problems.admit(where, pair and pair.id, issues):
            pairs.append(pair if pair.where is not None else replace(pair, where=where))
    problems.raise_if_any()
    return pairs


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen response, rejected response) from two hh-rlhf transcripts, or None.

    The cut is the last "\\n\\nAssistant:" inside the prefix both transcripts share, not the
    last one in each: in real hh-rlhf data a response sometimes holds "\\n\\nAssistant:" or
    "Human:" itself, and cutting each transcript at its own last marker would give the two
    sides different prompts.
    """
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(HH_ASSISTANT, 0, shared)
    if cut < 0:
        return None
    cut += len(HH_ASSISTANT)
    # Responses keep their leading space: prompt + response is then the original transcript,
    # which is also how TRL formats hh-rlhf.
    return chosen[:cut], chosen[cut:], rejected[cut:]


def read_rows(path: str | os.PathLike, problems: Problems) -> list[tuple[str, Any]]:
    """(position, raw row) for each row of a pair (or prompt) file or folder, in the formats
    `load_pairs` reads; malformed JSONL lines go to `problems`."""
    if Path(path).is_dir():
        return _folder_records(Path(path))
    kind = file_kind(path, _KINDS, "pair file")
    if kind == "jsonl":
        return read_jsonl(path, problems)
    rows = _read_parquet(path) if kind == "parquet" else read_json(path)
    if not isinstance(rows, list):
        raise ValueError(
            f"{os.fspath(path)}: expected a list of pair objects, got {type_name(rows)}"
        )
    return [(f"row {i}", row) for i, row in enumerate(rows)]


def _folder_records(folder: Path) -> list[tuple[str, Any]]:
    """The rows of a `datasets` folder (save_to_disk of one split: its state.json lists the
    Arrow files in order) or of a folder of .parquet / .arrow shards (in name order), each
    named by its file and 0-based row."""
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())
        raise ValueError(f"{folder}: a DatasetDict folder (splits: {', '.join(splits) or 'none'}); "
                         f"give one split's folder, e.g. {folder / (splits or ['train'])[0]}")
    state = folder / "state.json"
    if state.is_file():
        data = read_json(state)
        listed = data.get("_data_files") if isinstance(data, dict) else None
        names = ([f.get("filename") for f in listed] if isinstance(listed, list)
                 and all(isinstance(f, dict) for f in listed) else None)
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{state}: not a datasets state file (no '_data_files' list of "
                             "{'filename': ...})")
        files = [folder / name for name in names]
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix in (".parquet", ".arrow"))
        if not files:
            raise ValueError(f"{folder}: a folder without state.json (a datasets folder) nor "
                             ".parquet or .arrow files")
    records = []
    for file in files:
        rows = _read_parquet(file) if file.suffix == ".parquet" else _read_arrow(file)
        records += [(f"{file.name} row {i}", row) for i, row in enumerate(rows)]
    return records


def _read_parquet(path: str | os.PathLike) -> list[dict[str, Any]]:
    pa = import_pyarrow(f"{os.fspath(path)}: reading Parquet")
    pq = pa.parquet

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{os.fspath(path)}: not a readable Parquet file: {e}") from e


def _read_arrow(path: str | os.PathLike) -> list[dict[str, Any]]:
    """An Arrow IPC file: the stream format `datasets` writes, or the random-access one."""
    pa = import_pyarrow(f"{os.fspath(path)}: reading Arrow")
    ipc = pa.ipc

    try:
        with pa.memory_map(os.fspath(path)) as source:
            try:
                table = ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                table = ipc.open_file(source).read_all()
        return table.to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{os.fspath(path)}: not a readable Arrow file: {e}") from e


def _pair_from_row(row: Any, index: int, allow_empty: bool) -> tuple[Pair | None, list[str]]:
    """The pair a row describes, and every problem with it (pair is None if any)."""
    if not isinstance(row, dict):
        return None, [f"expected an object, got {type_name(row)}"]
    has_ab = "response_a" in row or "response_b" in row
    has_cr = "chosen" in row or "rejected" in row
    if has_ab and has_cr:
        return None, ["ambiguous row: has both response_a/response_b and chosen/rejected"]
    if has_ab:
        fields, names, issues = _ab_fields(row)
    elif has_cr:
        fields, names, issues = _cr_fields(row)
    else:
        return None, [
            "missing columns: expected 'prompt', 'response_a', 'response_b', "
            "or 'chosen', 'rejected' (with or without 'prompt')"
        ]
    pair_id = str(index)
    if "id" in row:
        pair_id, problem = coerce_id(row["id"])
        if problem:
            issues.append(problem)
    if not issues:
        issues = _empty_fields(fields, names, allow_empty)
    if issues:
        return None, issues
    used = {"id", "prompt", *_AB_COLUMNS, *_CR_COLUMNS} | ({"label"} if has_ab else set())
    extra = {k: v for k, v in row.items() if k not in used}
    return Pair(id=pair_id, extra=extra, **fields), []


# Each *_fields function returns (Pair fields, the name the user knows each text field by,
# problems), so a message about an empty response names the column the user wrote.
_Fields = tuple[dict[str, Any], dict[str, str], list[str]]


def _ab_fields(row: dict[str, Any]) -> _Fields:
    label = row.get("label")
    label_issues = [] if _valid_label(label) else [f"'label' must be 0, 1 or null, got {label!r}"]
    if _is_conversational(row, _AB_COLUMNS):
        fields, names, issues = _conversation_fields(row, _AB_COLUMNS)
        return {**fields, "label": label}, names, issues + label_issues
    issues = _missing_or_non_string(row, _AB_COLUMNS) + label_issues
    fields = {name: row.get(name) for name in _AB_COLUMNS}
    fields["label"] = label
    return fields, {name: repr(name) for name in _AB_COLUMNS}, issues


def _valid_label(label: Any) -> bool:
    # bool and float are excluded although True == 1 == 1.0: such a label is a mistake in the
    # file, not a preference.
    if label is None:
        return True
    return isinstance(label, int) and not isinstance(label, bool) and label in (0, 1)


def _cr_fields(row: dict[str, Any]) -> _Fields:
    columns = ("prompt", *_CR_COLUMNS) if "prompt" in row else _CR_COLUMNS
    if _is_conversational(row, columns):
        fields, names, issues = _conversation_fields(row, columns)
        return {**fields, "label": 0}, names, issues
    issues = _missing_or_non_string(row, columns)
    if issues:
        return {}, {}, issues
    chosen, rejected = row["chosen"], row["rejected"]
    names = {"prompt": "'prompt'", "response_a": "'chosen'", "response_b": "'rejected'"}
    if "prompt" in row:
        prompt = row["prompt"]
    else:
        split = split_hh(chosen, rejected)
        if split is None:
            return {}, {}, [
                "no 'prompt' column, and 'chosen'/'rejected' are not hh-rlhf transcripts "
                f"(no shared prefix ending in {HH_ASSISTANT!r})"
            ]
        prompt, chosen, rejected = split
        names = {
            "prompt": "shared prompt of 'chosen' and 'rejected'",
            "response_a": "'chosen' response (after the shared prompt)",
            "response_b": "'rejected' response (after the shared prompt)",
        }
    fields = {"prompt": prompt, "response_a": chosen, "response_b": rejected, "label": 0}
    return fields, names, []


def _is_conversational(row: dict[str, Any], columns: tuple[str, ...]) -> bool:
    return any(isinstance(row.get(name), list) for name in columns)


def _conversation_fields(row: dict[str, Any], columns: tuple[str, ...]) -> _Fields:
    """A row in TRL's conversational format: columns are (prompt, response, response), or
    (response, response) for an implicit prompt."""
    missing = [name for name in columns if name not in row]
    if missing:
        return {}, {}, [f"missing column(s) {', '.join(repr(m) for m in missing)}"]
    text = [name for name in columns if isinstance(row[name], str)]
    if text:
        verb = "is" if len(text) == 1 else "are"
        return {}, {}, [f"{', '.join(map(repr, text))} {verb} text but other columns are lists of "
                        "messages: give a row all as text (TRL's standard format) or all as "
                        "messages (its conversational format)"]
    checked, issues = {}, []
    for name in columns:
        checked[name], problems = check_messages(row[name], name)
        issues += problems
    if issues:
        return {}, {}, issues
    *prompt_column, a, b = columns
    if prompt_column:
        prompt = checked[prompt_column[0]]
        text_a, issues = response_of(checked[a], a)
        text_b, issues_b = response_of(checked[b], b)
        issues += issues_b
        names = {"prompt": repr(prompt_column[0]), "response_a": repr(a), "response_b": repr(b)}
    else:
        split = split_conversations(checked[a], checked[b])
        if isinstance(split, str):
            return {}, {}, [split]
        prompt, text_a, text_b = split
        names = {"prompt": f"shared messages of {a!r} and {b!r}",
                 "response_a": f"{a!r} response (after the shared messages)",
                 "response_b": f"{b!r} response (after the shared messages)"}
    if issues:
        return {}, {}, issues
    fields = {"prompt": conversation_text(prompt), "response_a": text_a, "response_b": text_b,
              "prompt_messages": prompt}
    return fields, names, []


def _missing_or_non_string(row: dict[str, Any], columns: tuple[str, ...]) -> list[str]:
    missing = [name for name in columns if name not in row]
    issues = [f"missing column(s) {', '.join(repr(m) for m in missing)}"] if missing else []
    for name in columns:
        if name in row and not isinstance(row[name], str):
            issues.append(f"{name!r} must be a string, got {type_name(row[name])}")
    return issues


def _empty_fields(fields: dict[str, Any], names: dict[str, str], allow_empty: bool) -> list[str]:
    checked = ("prompt",) if allow_empty else ("prompt", "response_a", "response_b")
    return [f"{names[f]} is empty" for f in checked if not fields[f].strip()]
