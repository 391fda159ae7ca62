"""The method's steps, as library functions, and where their settings' defaults come from.

| step           | function                               | in                         -> out |
| rate           | ramo.rate.rate                         | judge, pairs, rules -> a ratings store |
| select         | ramo.select.select                     | pairs, rules, Ratings -> [Selection] |
|   (from a store) | ramo.select.select_store             | pairs, rules, store -> selections file, by blocks |
| adapter-train  | ramo.adapter.train.adapter_step        | pairs, [Selection], rules -> adapter folder, metrics |
|   (evaluate)   | ramo.adapter.evaluate.evaluate_adapter | adapter, pairs, [Selection], Ratings -> metrics |
| adapter-apply  | ramo.adapter.apply.apply_adapter       | adapter, judge, pairs, rules -> [Selection] (k rules rated) |
| label          | ramo.label.label                       | pairs, [Selection] -> [Preference], counts |
| rm-train       | ramo.reward.train.train_reward_model   | [Preference] -> reward-model folder |
| eval           | ramo.evaluation.evaluate               | reward model, RewardBench-schema pairs -> accuracies |
| report         | ramo.report.write_report               | a run folder -> report.md, plots |
| (study)        | ramo.study.selection_study             | scores, labels, relevance -> agreement per strategy and k |

The command line (ramo.cli) and the pipeline (ramo.pipeline) are adapters over these
functions. A setting's default is written once, in the signature of the function that uses
it; `defaults` reads it from there for the CLI's flags and the pipeline's config sections.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

# The judge's settings as the CLI and the config name them: RuleJudge's own, plus how to load
# it (`load_judge`).
JUDGE_LOADING = {"model": "default", "dtype": "float32", "device": None, "engine": "transformers",
                 "engine_options": None}
JUDGE_OPTIONS = ("template", "normalize", "batch_size", "max_length", "on_overflow")
# The answers' words and token ids; None: the judge's own (the embedded judge reads
# "Irrelevant" from its first token), so they are passed only when given.
JUDGE_ANSWERS = ("answer_words", "answer_ids")
# The dtypes a judge runs in (the CLI's --dtype choices; the vLLM engine runs in these too).
JUDGE_DTYPES = ("float32", "bfloat16", "float16")


def defaults(function: Callable, names: Sequence[str] | None = None) -> dict[str, Any]:
    """{name: default} of `function`'s keyword parameters (those in `names`, in that order,
    when given; else every one that has a default)."""
    parameters = inspect.signature(function).parameters
    if names is None:
        return {name: p.default for name, p in parameters.items()
                if p.default is not inspect.Parameter.empty}
    missing = [name for name in names if name not in parameters
               or parameters[name].default is inspect.Parameter.empty]
    if missing:
        raise AssertionError(f"{function.__qualname__} has no default for {missing}")
    return {name: parameters[name].default for name in names}


def judge_defaults() -> dict[str, Any]:
    from ramo.judge import RuleJudge

    return {**JUDGE_LOADING, **defaults(RuleJudge.__init__, JUDGE_OPTIONS + JUDGE_ANSWERS)}


def check_judge_settings(settings: dict[str, Any]) -> None:
    """The judge settings that need no model checked (ValueError naming the setting): its
    dtype, device, engine, template (a file is read) and RuleJudge's options. The pipeline checks
    them before its first step; `load_judge` on every load."""
    from ramo.device import default_device
    from ramo.judge.models import ENGINES
    from ramo.judge.rule_judge import check_options
    from ramo.judge.templates import get_template

    settings = {**judge_defaults(), **settings}
    if settings["dtype"] not in JUDGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(JUDGE_DTYPES)}, not "
                         f"{settings['dtype']!r}")
    if settings["engine"] not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not "
                         f"{settings['engine']!r}")
    get_template(settings["template"])
    check_options(**{name: settings[name] for name in JUDGE_OPTIONS + JUDGE_ANSWERS
                     if name != "template"})
    if settings["device"]:
        default_device(settings["device"])  # a name torch knows, a GPU that is there


def load_judge(settings: dict[str, Any]):
    """A RuleJudge from judge settings (`judge_defaults` keys; missing ones take their
    defaults) on this rank's device (`ramo.device.default_device`), with no bar of its own:
    the steps show their own."""
    import torch

    from ramo.judge import RuleJudge
    from ramo.device import default_device

    settings = {**judge_defaults(), **settings}
    check_judge_settings(settings)
    return RuleJudge.from_pretrained(
        settings["model"], dtype=getattr(torch, settings["dtype"]),
        device=default_device(settings["device"]), engine=settings["engine"],
        engine_options=settings["engine_options"], progress=False,
        **{name: settings[name] for name in JUDGE_OPTIONS},
        **{name: settings[name] for name in JUDGE_ANSWERS if settings[name] is not None})
