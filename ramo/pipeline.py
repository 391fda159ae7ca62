"""`ramo pipeline`: the whole method from one config file, every artefact in one run folder.

Steps, in order (each one a library function: ramo/steps.py):
  rate           the judge rates every pair on every rule        -> ratings.sqlite
  select         max-discrepancy top-k per pair, and its label   -> selections.jsonl
  adapter-train  the Rule Adapter on those pairs and their rules -> adapter/ (+ metrics on
                 held-out pairs: adapter/metrics.json)
  adapter-apply  new pairs: the adapter picks k rules, the judge rates only those
                                                                 -> adapter_selections.jsonl
  label          TRL preference rows, ties dropped and counted   -> labeled.jsonl
  rm-train       a Bradley-Terry reward model                    -> rm/ (save_pretrained)
  eval           RewardBench-style accuracy by subset, section   -> eval.json, eval.md
  report         report.md and plots/*.png from all of the above
Each step writes its outputs atomically and then a record, steps/<step>.json (the config
settings it used, the sha256 of the input files it read and of the earlier steps' records,
counts, seconds); a step whose record exists is skipped, so a stopped run resumes where it
stopped (and the rating inside the rate step resumes per response), unless an earlier step
has run again since it ran (its record changed): then it read outputs that are gone, and
runs again too. The report is the exception: it is cheap, and rebuilt
from the run folder's files on every run that names it. `--steps` runs a subset, each step
named once and in the order above (another order is refused: a step reads what the earlier
ones wrote). A rerun whose config changed a setting that a done step used (say select.k),
or whose input files (rules, pairs, new_pairs, eval) differ in content from those a done
step read (an optional one added or removed included), is refused before anything runs,
naming them: use a new run_dir, or delete the records of the steps from the first changed
one on to redo them. Pairs given as a folder (Parquet / Arrow shards, a datasets folder)
are digested over every file under it but hidden ones, by relative name, size and bytes.
Settings of speed and place (judge.device, judge.batch_size, judge.engine_options,
evaluation.batch_size) may change between runs. One pipeline at a time runs in a run folder
(it holds .ramo-pipeline.lock); at its start it removes the temporaries that a killed run
left there.

Config (YAML or JSON); paths are relative to the config file; only `pairs` is required.
Before anything is written the paths must be text, every setting is type-checked (a number
may be written as text, e.g. 2e-5; inf and NaN are refused), and its value is checked by
its step's own checks (choices such as select.relevance, ranges such as rm.epochs > 0;
judge.dtype is float32, bfloat16 or float16); what needs the judge loaded (its context
limit, room for its instructions within judge.max_length) is checked before the ratings
store is opened:

    run_dir: run                # default: the config file's folder / "run"
    rules: default              # a rule pool file, or ramo's default pool
    pairs: pairs.jsonl          # rated on every rule (a file, or a folder of shards)
    new_pairs: new.jsonl        # optional: labeled through the adapter (k rules per side)
    eval: eval.jsonl            # optional: RewardBench-schema evaluation set
    judge: {...}                # sections of settings: any subset of those listed below
    select: {...}
    adapter: {...}
    rm: {...}
    evaluation: {...}

The sections' settings and defaults (`sections()`, read from the step functions):
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ramo.checks import optional_positive_integer, positive_integer

STEPS = ("rate", "select", "adapter-train", "adapter-apply", "label", "rm-train", "eval", "report")
RM_SETTINGS = ("model", "epochs", "learning_rate", "batch_size", "max_length",
               "center_rewards_coefficient", "margin", "bf16", "gradient_checkpointing", "seed",
               "lora")
ADAPTER_SETTINGS = ("backbone", "epochs", "learning_rate", "batch_size", "max_length", "seed",
                    "lora")


# The settings of each step, as config keys ("section" for all of a section's): a step's record
# stores their values, and a rerun with other values is refused. Settings that change only
# how fast or where a step runs, not what it makes, are left out (_HOW_ONLY).
STEP_SETTINGS = {"rate": ("judge",), "select": ("select",),
                 "adapter-train": ("adapter", "select.k"), "adapter-apply": ("judge", "select.k"),
                 "label": (), "rm-train": ("rm",), "eval": ("evaluation", "rm"), "report": ()}
_HOW_ONLY = {"judge.device", "judge.batch_size", "judge.engine_options", "evaluation.batch_size"}
# The input files each step reads itself (config keys): a step's record stores their digests,
# and a rerun over changed files is refused like one with changed settings (a step whose
# inputs are another step's outputs is covered by that step: the refusal reaches every later
# step's record). With evaluation.human_labels, eval reads the pairs as well.
STEP_INPUTS = {"rate": ("rules", "pairs"), "select": ("rules", "pairs"),
               "adapter-train": ("rules", "pairs"), "adapter-apply": ("rules", "new_pairs"),
               "label": ("rules", "pairs", "new_pairs"), "rm-train": (), "eval": ("eval",),
               "report": ()}
# Records written before they stored "config": the section their "settings" hold.
_OLD_SETTINGS = {"select": "select", "adapter-train": "adapter", "rm-train": "rm"}


def sections() -> dict[str, dict[str, Any]]:
    """Each config section's settings and their defaults, read from the step functions'
    signatures (ramo.steps): the defaults are written once, there."""
    from ramo.adapter.train import DEFAULT_HOLDOUT, train_adapter
    from ramo.evaluation import evaluate
    from ramo.reward.train import train_reward_model
    from ramo.select import select
    from ramo.steps import defaults, judge_defaults

    return {
        "judge": judge_defaults(),
        "select": defaults(select),
        "adapter": {**defaults(train_adapter, ADAPTER_SETTINGS), "holdout": DEFAULT_HOLDOUT},
        "rm": defaults(train_reward_model, RM_SETTINGS),
        # baseline: also score the untrained backbone, for scale; human_labels: also train the
        # same reward model on the pairs' own labels (where they have them) and score it
        "evaluation": {**defaults(evaluate, ("batch_size", "max_length", "weights")),
                       "baseline": True, "human_labels": False},
    }


def setting_types() -> dict[str, dict[str, tuple[type, ...]]]:
    """Each config section's settings and the types they take, from the step functions'
    annotations (ramo.steps), else from their defaults' types."""
    from ramo.adapter.train import train_adapter
    from ramo.evaluation import evaluate
    from ramo.judge import RuleJudge
    from ramo.reward.train import train_reward_model
    from ramo.select import select

    annotated = {"judge": RuleJudge.__init__, "select": select, "adapter": train_adapter,
                 "rm": train_reward_model, "evaluation": evaluate}
    # What a config can give for the settings not annotated as such (how the judge loads).
    written = {"judge.model": "str", "judge.dtype": "str", "judge.device": "str | None",
               "judge.engine": "str", "judge.engine_options": "dict | None",
               "judge.template": "str", "adapter.holdout": "float",
               "evaluation.baseline": "bool", "evaluation.human_labels": "bool"}
    out = {}
    for name, values in sections().items():
        parameters = inspect.signature(annotated[name]).parameters
        out[name] = {}
        for key, default in values.items():
            annotation = written.get(f"{name}.{key}")
            if annotation is None and key in parameters:
                annotation = parameters[key].annotation
            kinds = _kinds(annotation)
            if not kinds and default is not None:
                kinds = (type(default),)
            out[name][key] = kinds
    return out


_KIND_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None),
               "dict": dict}


def _kinds(annotation) -> tuple[type, ...]:
    """(int, type(None)) from 'int | None'; () for what a config cannot write (Path, ...)."""
    if not isinstance(annotation, str):
        return ()
    parts = [part.strip().split("[")[0] for part in annotation.split("|")]
    return tuple(_KIND_NAMES[part] for part in parts if part in _KIND_NAMES)


def _check_setting(name: str, value: Any, kinds: tuple[type, ...]) -> Any:
    """The value, if it is of one of `kinds` (a number written as text, e.g. '2e-5', read as a
    float where a float goes); else ValueError naming the setting, the value and the types."""
    if not kinds or (value is None and type(None) in kinds):
        return value
    if isinstance(value, bool):
        ok = bool in kinds
    elif isinstance(value, int):
        ok = int in kinds or float in kinds
    elif isinstance(value, float):
        ok = float in kinds
    elif isinstance(value, str):
        ok = str in kinds
        if not ok and float in kinds:
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
    else:
        ok = isinstance(value, dict) and dict in kinds
    if not ok:
        words = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
                 dict: "a mapping", type(None): "null"}
        expected = " or ".join(words[kind] for kind in kinds
                               if not (kind is int and float in kinds))
        raise ValueError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if not _finite(value):  # YAML's .inf and .nan: no step means them, no JSON record holds them
        raise ValueError(f"{name} must hold finite numbers only, got {value!r}")
    return value


def _finite(value: Any) -> bool:
    """No inf or NaN in the value, nor in a mapping's or list's values (engine_options)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


@dataclass
class Config:
    pairs: Path
    run_dir: Path
    rules: str = "default"
    new_pairs: Path | None = None
    eval: Path | None = None
    judge: dict = field(default_factory=lambda: sections()["judge"])
    select: dict = field(default_factory=lambda: sections()["select"])
    adapter: dict = field(default_factory=lambda: sections()["adapter"])
    rm: dict = field(default_factory=lambda: sections()["rm"])
    evaluation: dict = field(default_factory=lambda: sections()["evaluation"])

    @classmethod
    def from_dict(cls, raw: Any, base: Path, where: str = "config") -> Config:
        """Validated; unknown keys are errors (a typo must not silently fall to a default)."""
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known, key=str)  # YAML keys may be numbers as well
        if unknown:
            raise ValueError(f"{where}: unknown settings {unknown}; the settings are {sorted(known)}")
        if not raw.get("pairs"):
            raise ValueError(f"{where}: `pairs` (the preference pairs to rate) is required")

        def text(key):
            """The key's path as written; None when not given (null or empty)."""
            value = raw.get(key)
            if value is None or value == "":
                return None
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{where}: `{key}` must be a path (a string), got {value!r} "
                                 f"({type(value).__name__})")
            return str(value)

        def path(key):
            value = text(key)
            return None if value is None else base / value

        given_sections = {}
        for name, defaults in sections().items():
            given = raw.get(name) or {}
            if not isinstance(given, dict):
                raise ValueError(f"{where}: `{name}` must be a mapping, got {type(given).__name__}")
            bad = sorted(set(given) - set(defaults), key=str)
            if bad:
                raise ValueError(f"{where}: unknown {name} settings {bad}; they are {sorted(defaults)}")
            given_sections[name] = {**defaults, **given}
        rules = text("rules") or "default"
        return cls(pairs=path("pairs"), run_dir=path("run_dir") or base / "run",
                   rules=rules if rules == "default" else str(base / rules),
                   new_pairs=path("new_pairs"), eval=path("eval"), **given_sections)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Config:
        """A JSON (.json) or YAML config file; ramo.io's readers name the file in every
        error (malformed, not UTF-8, nested too deeply) and ignore a UTF-8 BOM."""
        from ramo.io.jsonl import read_json
        from ramo.io.rules import read_yaml

        path = Path(path)
        raw = read_json(path) if path.suffix.lower() == ".json" else read_yaml(path, typed=True)
        return cls.from_dict(raw, path.resolve().parent, where=str(path))

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


class Pipeline:
    """Runs the steps of a Config; `judge` is loaded once, on first use."""

    def __init__(self, config: Config, *, progress: bool = True, log=print):
        self.config = config
        self.dir = Path(config.run_dir)
        self.progress = progress
        self.log = log
        self._judge = None
        self._loaded: dict[str, Any] = {}
        self._digests: dict[str, str | None] = {}

    # ---- where things are ----------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.dir / name

    def record_path(self, step: str) -> Path:
        return self.dir / "steps" / f"{step}.json"

    def record(self, step: str) -> dict | None:
        path = self.record_path(step)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    # ---- inputs, loaded once and checked before any work ---------------------------------

    @property
    def rules(self):
        if "rules" not in self._loaded:
            from ramo.io import load_rules

            self._loaded["rules"] = load_rules(self.config.rules)
        return self._loaded["rules"]

    @property
    def pairs(self):
        return self._pairs("pairs", self.config.pairs)

    @property
    def new_pairs(self):
        return self._pairs("new_pairs", self.config.new_pairs) if self.config.new_pairs else []

    def _pairs(self, key: str, path: Path):
        if key not in self._loaded:
            from ramo.io import load_pairs

            self._loaded[key] = load_pairs(path)
        return self._loaded[key]

    @property
    def judge(self):
        if self._judge is None:
            from ramo.steps import load_judge

            self._judge = load_judge(self.config.judge)
        return self._judge

    def check_settings(self) -> None:
        """Every section's settings type-checked (numbers written as text read as floats)."""
        for name, types in setting_types().items():
            values = getattr(self.config, name)
            for key, value in values.items():
                values[key] = _check_setting(f"{name}.{key}", value, types.get(key, ()))

    def step_settings(self, step: str) -> dict[str, Any]:
        """{"section.key": value} of the settings `step` uses, as its record stores them."""
        out = {}
        for name in STEP_SETTINGS[step]:
            section, _, key = name.partition(".")
            values = getattr(self.config, section)
            for key in [key] if key else values:
                if f"{section}.{key}" not in _HOW_ONLY:
                    out[f"{section}.{key}"] = values[key]
        return json.loads(json.dumps(out))  # as the record reads back

    def input_digests(self, step: str) -> dict[str, str | None]:
        """{"pairs": sha256 of the file's bytes (a folder's files: `_sha256`), ...} for the
        inputs `step` reads (None for one not configured), as its record stores them."""
        from ramo.io.rules import rule_pool_path

        names = STEP_INPUTS[step]
        if step == "eval" and self.config.evaluation.get("human_labels"):
            names += ("pairs", "new_pairs")  # it also trains on the pairs' own labels
        out = {}
        for name in names:
            if name not in self._digests:
                value = getattr(self.config, name)
                path = None if value is None else (
                    rule_pool_path(value) if name == "rules" else Path(value))
                self._digests[name] = None if path is None else _sha256(path)
            out[name] = self._digests[name]
        return out

    def earlier_records(self, step: str) -> dict[str, str | None]:
        """{each step before `step`: the sha256 of its record, None where it has none}, as
        `step`'s record stores them: a step that ran again since rewrote its record and its
        outputs, which the later steps read."""
        out = {}
        for earlier in STEPS[:STEPS.index(step)]:
            path = self.record_path(earlier)
            out[earlier] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        return out

    def check_records(self, steps: tuple[str, ...]) -> None:
        """Refuses to skip a done step whose record holds other values of its settings than
        the config's, or other digests of its input files (records of ramo versions that
        stored none are trusted)."""
        changed = {}
        for step in steps:
            record = self.record(step) if step != "report" else None
            if record is None:
                continue
            diff = []
            if isinstance(record.get("config"), dict):
                stored = record["config"]
            elif step in _OLD_SETTINGS and isinstance(record.get("settings"), dict):
                stored = {f"{_OLD_SETTINGS[step]}.{key}": value
                          for key, value in record["settings"].items()}
            else:
                stored = {}
            now = self.step_settings(step)
            diff += [f"{key} {stored[key]!r} -> {now[key]!r}" for key in now
                     if key in stored and stored[key] != now[key]]
            if isinstance(record.get("inputs"), dict):
                for name, digest in self.input_digests(step).items():
                    was = record["inputs"].get(name, digest)
                    if was != digest:
                        how = "added" if was is None else "removed" if digest is None else "changed"
                        diff.append(f"{name} file {how}")
            if diff:
                changed[step] = diff
        if changed:
            first = min(STEPS.index(step) for step in changed)
            records = [f"steps/{step}.json" for step in STEPS[first:]
                       if self.record_path(step).is_file()]
            what = "; ".join(f"{step}: {', '.join(diff)}" for step, diff in changed.items())
            lines = {line for diff in changed.values() for line in diff}
            stores = ""
            if any(line.startswith("judge.") for line in lines):
                stores = (" and the ratings stores (ratings.sqlite, adapter_ratings.sqlite: "
                          "they hold one judge's ratings)")
            elif "rules file changed" in lines:
                stores = (" and the ratings stores (ratings.sqlite, adapter_ratings.sqlite) if "
                          "a rule's text changed under the same id: a store keeps the rule "
                          "texts it rated")
            else:
                texts = [store for name, store in (("pairs", "ratings.sqlite"),
                                                   ("new_pairs", "adapter_ratings.sqlite"))
                         if f"{name} file changed" in lines]
                if texts:
                    stores = (f" (and {' and '.join(texts)} if a pair's text changed under the "
                              "same id: a store keeps the texts it rated)")
            raise ValueError(
                f"{self.dir} holds results made with other settings or inputs than this config's "
                f"({what}); a run folder holds one config's results. Use a new run_dir, or "
                f"delete the records {', '.join(records)}{stores} to redo those steps")

    def check_inputs(self) -> None:
        """Type-checks the settings, checks their values (`check_values`) and loads (and so
        validates) every input before the first step writes anything."""
        self.check_settings()
        self.rules, self.pairs, self.new_pairs
        from ramo.select import check_k

        check_k(self.config.select["k"], self.rules, "select.k")
        self.check_values()
        ids = {p.id for p in self.pairs}
        both = sorted(ids & {p.id for p in self.new_pairs})
        if both:
            raise ValueError(f"pair ids in both pairs and new_pairs: {both[:5]}")
        if self.config.eval is not None:
            from ramo.evaluation import load_eval_pairs

            load_eval_pairs(self.config.eval)

    def check_values(self) -> None:
        """Each section's values (choices and ranges) by its step's own checks, without
        loading a model: a bad one is refused before the first step writes anything, not
        when its step runs, after earlier steps wrote their outputs. Checks that need the
        model (a judge.max_length past the judge's context, or too short for its
        instructions) come when it loads, before the ratings store is opened."""
        from ramo.adapter.train import check_holdout, check_training_options
        from ramo.evaluation import WEIGHTS
        from ramo.models.lora import check_rank
        from ramo.relevance import SOURCES
        from ramo.reward.train import check_training_arguments, train_reward_model
        from ramo.steps import check_judge_settings, defaults

        config = self.config
        with _naming("judge", config.judge):
            check_judge_settings(config.judge)
        with _naming("select", config.select):
            if config.select["relevance"] not in SOURCES:  # as ramo.select.select_blocks
                raise ValueError(f"relevance must be one of {SOURCES}, not "
                                 f"{config.select['relevance']!r}")
        adapter = config.adapter
        with _naming("adapter", adapter):
            check_training_options(k=config.select["k"], n_rules=len(self.rules),
                                   **{key: adapter[key] for key in
                                      ("epochs", "learning_rate", "batch_size", "max_length")})
            check_rank(adapter["lora"])
            check_holdout(adapter["holdout"])
        with _naming("rm", config.rm):
            check_training_arguments({**defaults(train_reward_model), **config.rm},
                                     self.path("rm"))
        evaluation = config.evaluation
        with _naming("evaluation", evaluation):  # as ramo.evaluation.evaluate
            if evaluation["weights"] not in WEIGHTS:
                raise ValueError(f"weights must be one of {WEIGHTS}, not "
                                 f"{evaluation['weights']!r}")
            positive_integer("batch_size", evaluation["batch_size"])
            optional_positive_integer("max_length", evaluation["max_length"])

    # ---- running -------------------------------------------------------------------------

    def run(self, steps: tuple[str, ...] = STEPS) -> None:
        check_steps(steps)
        self.check_inputs()
        for step in STEPS:  # now, with the inputs just read: not when a later record is written
            self.input_digests(step)
        self.check_records(steps)
        self.dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.dir):
            self._run(steps)

    def _run(self, steps: tuple[str, ...]) -> None:
        from ramo.io.atomic import remove_temporaries, write_json

        stale = remove_temporaries(self.dir)  # a killed run's: nobody else writes here now
        if stale:
            self.log(f"removed {len(stale)} temporaries that a stopped run left in {self.dir}")
        write_json(self.path("config.json"), self.config.to_dict())
        for step in steps:
            record, earlier = self.record(step), self.earlier_records(step)
            if record is not None and step != "report":
                # Records written before they stored the earlier ones' digests are trusted.
                if record.get("earlier", earlier) == earlier:
                    self.log(f"[{step}] done before: skipped ({self.record_path(step)})")
                    continue
                self.log(f"[{step}] an earlier step ran again after it: redone")
            self.log(f"[{step}] ...")
            start = time.perf_counter()
            stats = getattr(self, "_" + step.replace("-", "_"))()
            if stats is None:  # nothing to do with this config (no new pairs, no eval set)
                self.log(f"[{step}] not configured: skipped")
                continue
            stats["seconds"] = round(time.perf_counter() - start, 2)
            stats["config"] = self.step_settings(step)
            stats["inputs"] = self.input_digests(step)
            stats["earlier"] = earlier  # the step wrote no earlier step's record
            write_json(self.record_path(step), stats)
            self.log(f"[{step}] done in {stats['seconds']:.1f} s")

    def _rate(self) -> dict:
        from ramo.rate import cut_counts, open_store, rate

        self.judge.check_context(self.pairs, self.rules)
        with open_store(self.path("ratings.sqlite"), self.judge) as store:
            before = store.count()
            rated = rate(self.judge, self.pairs, self.rules, store, progress=self.progress)
            count = store.count()
            cut = cut_counts(store, self.pairs)
        if cut["responses_cut"]:
            self.log(f"  {cut['responses_cut']} responses cut in the middle to fit the judge's "
                     f"{self.judge.max_length}-token context (the longest {cut['longest_cut']})")
        return {"pairs": len(self.pairs), "rules": len(self.rules),
                "responses_rated_now": rated, "ratings_before": before, "ratings": count, **cut,
                "judge_calls_full": 2 * len(self.pairs) * len(self.rules),
                "judge": self.judge.describe(), "judge_fingerprint": self.judge.fingerprint()}

    def _select(self) -> dict:
        from ramo.select import select_store, summary

        settings = self.config.select
        stats = select_store(self.pairs, self.rules, self.path("ratings.sqlite"),
                             self.path("selections.jsonl"), progress=self.progress,
                             **settings)
        self.log("  " + summary(stats))
        return {"settings": settings, **stats}

    def _adapter_train(self) -> dict:
        from ramo.adapter import metrics_markdown
        from ramo.adapter.train import adapter_step
        from ramo.io import load_selections

        settings = dict(self.config.adapter)
        result = adapter_step(self.pairs, load_selections(self.path("selections.jsonl")),
                              self.rules, self.path("adapter"),
                              ratings=self.path("ratings.sqlite"), k=self.config.select["k"],
                              progress=self.progress, **settings)
        stats = {"settings": settings, "train_pairs": result["train_pairs"],
                 "heldout_pairs": result["heldout_pairs"],
                 "loss_history": result["training"]["loss_history"],
                 "truncation": result["training"]["truncation"]}
        if result["metrics"] is not None:
            self.log(metrics_markdown(result["metrics"]))
            stats["metrics"] = result["metrics"]
        return stats

    def _adapter_apply(self) -> dict | None:
        if not self.new_pairs:
            return None
        from ramo.adapter import RuleAdapter, apply_adapter
        from ramo.io import write_selections
        from ramo.rate import cut_counts, open_store
        from ramo.select import counts, summary

        adapter = RuleAdapter.from_pretrained(self.path("adapter"))
        self.judge.check_context(self.new_pairs, self.rules)
        with open_store(self.path("adapter_ratings.sqlite"), self.judge) as store:
            applied = apply_adapter(adapter, self.judge, self.new_pairs, self.rules,
                                    k=self.config.select["k"], store=store,
                                    progress=self.progress)
            cut = cut_counts(store, self.new_pairs)
        write_selections(self.path("adapter_selections.jsonl"), applied)
        stats = counts(self.new_pairs, applied)
        self.log("  " + summary(stats))
        return {"pairs": stats.pop("pairs"), "k": applied.k, "judge_calls": applied.judge_calls,
                "reused": applied.reused, "judge_calls_full": applied.full_calls, **cut, **stats}

    def _label(self) -> dict:
        from ramo.io import load_selections, write_preferences
        from ramo.label import label

        selections = load_selections(self.path("selections.jsonl"))
        if self.new_pairs:
            selections += load_selections(self.path("adapter_selections.jsonl"))
        labeled, counts = label(self.pairs + self.new_pairs, selections,
                                [r.id for r in self.rules])
        if not labeled:
            raise ValueError("every pair is a tie: there is nothing to train a reward model on")
        write_preferences(self.path("labeled.jsonl"), labeled)
        self.log(f"  {counts['labeled']} labeled pairs; {counts['ties_dropped']} ties dropped")
        return counts

    def _rm_train(self) -> dict:
        from ramo.reward import train_reward_model

        settings = self.config.rm
        log = train_reward_model(self.path("labeled.jsonl"), self.path("rm"),
                                 progress=self.progress, **settings)
        return {"settings": settings, "loss_history": log.get("loss_history", []),
                "truncation": log["truncation"]}

    def _eval(self) -> dict | None:
        if self.config.eval is None:
            return None
        from ramo.evaluation import evaluate, to_markdown, write_result

        settings = dict(self.config.evaluation)
        baseline, human_labels = settings.pop("baseline"), settings.pop("human_labels")
        result = evaluate(self.path("rm"), self.config.eval, progress=self.progress, **settings)
        write_result(result, self.path("eval.json"), self.path("eval.md"))
        self.log(to_markdown(result))
        stats = {"result": result}
        if baseline:  # the backbone before training, with the head training started from
            from ramo.models import load_reward_model

            untrained = load_reward_model(self.config.rm["model"], seed=self.config.rm["seed"])
            stats["baseline"] = evaluate(untrained, self.config.eval, progress=self.progress,
                                         **settings)
        human = [p for p in self.pairs + self.new_pairs if p.label is not None]
        if human_labels and human:  # what the same training makes of the humans' labels
            from ramo.io import preferences_from_pairs
            from ramo.io.atomic import scratch_dir
            from ramo.reward import train_reward_model

            # In the run folder: a kill leaves no model in /tmp, and the next run clears it.
            with scratch_dir(self.path("rm-human")) as scratch:
                train_reward_model(preferences_from_pairs(human), scratch, progress=self.progress,
                                   **self.config.rm)
                stats["human_labels"] = evaluate(scratch, self.config.eval,
                                                 progress=self.progress, **settings)
            stats["human_labels"]["pairs"] = len(human)
        return stats

    def _report(self) -> dict:
        from ramo.report import write_report

        paths = write_report(self)
        self.log(f"  report: {paths[0]}")
        return {"files": [str(p) for p in paths]}


@contextmanager
def _naming(section: str, values: dict) -> Iterator[None]:
    """A step's own check of a section's values, its ValueError naming the section: the
    steps' messages start with the setting's name ('epochs must be ...': 'rm.epochs must
    be ...')."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        raise ValueError(f"{section}.{text}" if text.split(" ")[0] in values
                         else f"{section}: {text}") from None


def _sha256(path: Path) -> str:
    """sha256 of a file's bytes. Of a folder (pairs as Parquet / Arrow shards, or a datasets
    folder): of every file under it but hidden ones, in the order of their relative names,
    each name and size before its bytes, so that a file renamed, added or removed changes
    it as an edit does."""
    digest = hashlib.sha256()
    if not path.is_dir():
        _digest_file(digest, path)
        return digest.hexdigest()
    names = sorted(file.relative_to(path).as_posix() for file in path.rglob("*")
                   if file.is_file())
    for name in names:
        if any(part.startswith(".") for part in name.split("/")):
            continue  # .DS_Store, a .git folder: not data
        digest.update(f"{name}\0{(path / name).stat().st_size}\0".encode())
        _digest_file(digest, path / name)
    return digest.hexdigest()


def _digest_file(digest, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Holds the run folder's lock (released by the OS however the process ends)."""
    import fcntl

    path = folder / ".ramo-pipeline.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another ramo pipeline is running in {folder} (it holds "
                             f"{path.name}); wait for it to finish or use another run_dir") from None
        yield


def describe_sections() -> str:
    """The sections with their defaults, as the config's YAML would write them."""
    import yaml

    text = yaml.safe_dump(sections(), sort_keys=False, default_flow_style=False)
    return "".join(f"    {line}\n" for line in text.splitlines())


def parse_steps(text: str) -> tuple[str, ...]:
    """Steps named in a comma-separated list, checked (`check_steps`)."""
    return check_steps(tuple(s.strip() for s in text.split(",") if s.strip()))


def check_steps(steps: tuple[str, ...]) -> tuple[str, ...]:
    """The steps, when there is one at least, each is one of STEPS, named once, and they come
    in the pipeline's order; else ValueError. Another order is refused, not reordered: a
    step reads what the earlier ones wrote, so `label,select` asks for something else than
    the run would do."""
    if not steps:
        raise ValueError(f"no steps given; the steps are {','.join(STEPS)}")
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise ValueError(f"unknown steps {bad}; the steps are {','.join(STEPS)}")
    ordered = sorted(set(steps), key=STEPS.index)
    if list(steps) != ordered:
        raise ValueError(f"steps {','.join(steps)}: name each step once, in the pipeline's "
                         f"order: {','.join(ordered)}")
    return tuple(steps)
