"""Flags that several commands share, with their defaults read from the step functions."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


PAIRS_HELP = ("preference pairs: JSONL(.gz), Parquet or JSON, or a folder (a datasets "
              "save_to_disk folder, or Parquet / Arrow shards); see README")


def add_judge_arguments(parser: argparse.ArgumentParser, *,
                        batch_size_flags: tuple[str, ...] = ("--batch-size",)) -> None:
    """The judge's flags, defaulting to the judge settings of ramo.steps: how it is loaded
    (--judge, --dtype, --device, --engine, --engine-option, --max-length, --on-overflow) and
    how it rates (--template, --normalize, the batch size under `batch_size_flags`,
    --answer-word, --answer-ids), so that every command that runs the judge can run it the
    same way. `judge_settings` reads them back."""
    from ramo.judge.models import ENGINES
    from ramo.judge.templates import TEMPLATES
    from ramo.steps import JUDGE_DTYPES, judge_defaults

    d = judge_defaults()
    parser.add_argument("--judge", default=d["model"],
                        help="judge: a local folder, a hub id, or 'default' (SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default=d["dtype"], choices=JUDGE_DTYPES,
                        help="the judge's weights and compute dtype (default %(default)s)")
    parser.add_argument("--device", default=d["device"],
                        help="cpu or cuda (default: cuda:LOCAL_RANK when CUDA is there, else cpu)")
    parser.add_argument("--engine", default=d["engine"], choices=ENGINES,
                        help="what runs the judge: transformers (default) or vLLM (pip install "
                        "'ramo[vllm]'; a local folder; it places the model itself)")
    parser.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                        dest="engine_options", type=_engine_option,
                        help="an argument of vllm.LLM, e.g. tensor_parallel_size=4 (the value "
                        "read as JSON when it parses, else as text; repeatable)")
    parser.add_argument("--max-length", type=positive, default=d["max_length"], metavar="TOKENS",
                        help="the longest sequence the judge reads, instructions and rule "
                        "included (default: the judge's context limit, from its config)")
    parser.add_argument("--on-overflow", default=d["on_overflow"], choices=["truncate", "error"],
                        help="a conversation longer than that: cut it in the middle, never the "
                        "instructions or the rule (truncate, the default; counted, and recorded "
                        "in the store), or refuse the run naming the pairs (error)")
    parser.add_argument("--template", default=d["template"], metavar="NAME_OR_FILE",
                        help=f"the judge's prompt: {', '.join(sorted(TEMPLATES))} "
                        f"(default {d['template']}), or a template file (.txt: the body; "
                        ".json/.yaml: body, rule_line, answer_lead, rule_lead_in; see README)")
    parser.add_argument("--normalize", default=d["normalize"], choices=["vocab", "choices"],
                        help="the answers' probabilities: softmax over the whole vocabulary "
                        "(vocab) or over the answer tokens only (choices); default %(default)s")
    parser.add_argument(*batch_size_flags, type=positive, default=d["batch_size"],
                        dest="judge_batch_size", metavar="N",
                        help="sequences per judge forward pass (default %(default)s)")
    parser.add_argument("--answer-word", action="append", default=[], metavar="ANSWER=WORD",
                        help="the word the judge is asked to answer with, e.g. irrelevant=NA "
                        "(repeatable; answers: yes, no, irrelevant)")
    parser.add_argument("--answer-ids", action="append", default=[], metavar="ANSWER=ID,ID",
                        help="token ids summed for an answer whose word is not one token, "
                        "e.g. irrelevant=6084,31302 (repeatable)")


def judge_settings(args: argparse.Namespace) -> dict:
    """The judge settings (ramo.steps.load_judge) that the flags of add_judge_arguments
    gave."""
    names = {"model": "judge", "dtype": "dtype", "device": "device", "engine": "engine",
             "max_length": "max_length", "on_overflow": "on_overflow", "template": "template",
             "normalize": "normalize", "batch_size": "judge_batch_size"}
    settings = {key: getattr(args, flag) for key, flag in names.items()}
    settings["engine_options"] = dict(args.engine_options) or None
    # --answer-word / --answer-ids (ValueError naming the flag for a malformed one)
    settings["answer_words"] = (_assignments(args.answer_word, "--answer-word", str)
                                if args.answer_word else None)
    settings["answer_ids"] = (_assignments(args.answer_ids, "--answer-ids",
                                           lambda v: [int(i) for i in v.split(",")])
                              if args.answer_ids else None)
    return settings


def _assignments(items: list[str], flag: str, parse) -> dict:
    """{"irrelevant": parse("NA")} from ["irrelevant=NA"]."""
    out = {}
    for item in items:
        answer, sep, value = item.partition("=")
        if not sep or not value:
            raise ValueError(f"{flag} {item!r}: write ANSWER=VALUE, e.g. irrelevant=...")
        try:
            out[answer.strip()] = parse(value)
        except ValueError:
            raise ValueError(f"{flag} {item!r}: the ids must be integers separated by commas")
    return out


def finite_number(text: str) -> float:
    """An argparse type: a finite number. NaN and the infinities are refused here: they would
    otherwise reach the outputs' JSON, which cannot hold them, after the work."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_number(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_lora_argument(parser: argparse.ArgumentParser, default: int | None) -> None:
    """--lora R, the same for every trainer (ramo.models.lora)."""
    parser.add_argument("--lora", type=positive, default=default, metavar="R",
                        help="train LoRA adapters of rank R on the backbone's linear layers "
                        "(a head the model adds, in full) instead of every weight; merged into "
                        "the weights before saving, so the folder loads as usual (needs peft: "
                        "pip install 'ramo[lora]')")


def _engine_option(text: str) -> tuple[str, object]:
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. tensor_parallel_size=2")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def add_pairs_and_rules(parser: argparse.ArgumentParser, pairs_help: str,
                        rules_help: str) -> None:
    parser.add_argument("--pairs", required=True, type=Path, help=pairs_help)
    parser.add_argument("--rules", required=True, help=rules_help)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
