"""Flags that several commands share, with their defaults read from the step functions."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_judge_arguments(parser: argparse.ArgumentParser, *, loading_only: bool = False) -> None:
    """--judge, --dtype, --device, --engine, --max-length, --on-overflow and (unless
    loading_only) --template, --normalize and --batch-size, defaulting to the judge settings
    of ramo.steps."""
    from ramo.judge.models import ENGINES
    from ramo.judge.templates import TEMPLATES
    from ramo.steps import judge_defaults

    d = judge_defaults()
    parser.add_argument("--judge", default=d["model"],
                        help="judge: a local folder, a hub id, or 'default' (SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default=d["dtype"], choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default=d["device"],
                        help="cpu or cuda (default: cuda:LOCAL_RANK when CUDA is there, else cpu)")
    parser.add_argument("--engine", default=d["engine"], choices=ENGINES,
                        help="what runs the judge: transformers (default) or vLLM (pip install "
                        "'ramo[vllm]'; a local folder; it places the model itself)")
    parser.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                        dest="engine_options", type=_engine_option,
                        help="an argument of vllm.LLM, e.g. tensor_parallel_size=4 (the value "
                        "read as JSON when it parses, else as text; repeatable)")
    parser.add_argument("--max-length", type=int, default=d["max_length"], metavar="TOKENS",
                        help="the longest sequence the judge reads, instructions and rule "
                        "included (default: the judge's context limit, from its config)")
    parser.add_argument("--on-overflow", default=d["on_overflow"], choices=["truncate", "error"],
                        help="a conversation longer than that: cut it in the middle, never the "
                        "instructions or the rule (truncate, the default; counted, and recorded "
                        "in the store), or refuse the run naming the pairs (error)")
    if loading_only:
        return
    parser.add_argument("--template", default=d["template"], metavar="NAME_OR_FILE",
                        help=f"the judge's prompt: {', '.join(sorted(TEMPLATES))} "
                        f"(default {d['template']}), or a template file (.txt: the body; "
                        ".json/.yaml: body, rule_line, answer_lead, rule_lead_in; see README)")
    parser.add_argument("--normalize", default=d["normalize"], choices=["vocab", "choices"])
    parser.add_argument("--batch-size", type=int, default=d["batch_size"],
                        help=f"sequences per forward pass (default {d['batch_size']})")


def judge_settings(args: argparse.Namespace, *, loading_only: bool = False) -> dict:
    """The judge settings (ramo.steps.load_judge) that the flags of add_judge_arguments, with
    the same loading_only, gave."""
    names = {"model": "judge", "dtype": "dtype", "device": "device", "engine": "engine",
             "max_length": "max_length", "on_overflow": "on_overflow"}
    if not loading_only:
        names.update(template="template", normalize="normalize", batch_size="batch_size")
    settings = {key: getattr(args, flag) for key, flag in names.items()}
    settings["engine_options"] = dict(args.engine_options) or None
    return settings


def add_lora_argument(parser: argparse.ArgumentParser, default: int | None) -> None:
    """--lora R, the same for every trainer (ramo.models.lora)."""
    parser.add_argument("--lora", type=int, default=default, metavar="R",
                        help="train LoRA adapters of rank R on the backbone's linear layers "
                        "(a new head in full) instead of every weight; merged into the weights "
                        "before saving, so the folder loads as usual (needs peft: pip install "
                        "'ramo[lora]')")


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
