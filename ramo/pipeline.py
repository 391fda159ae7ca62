"""`ramo pipeline`: the whole method from one config file, every artefact in one run folder.

Steps, in order (design.md §1):
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
Each step writes its outputs atomically and then a record, steps/<step>.json (settings,
counts, seconds); a step whose record exists is skipped, so a stopped run resumes where it
stopped (and the rating inside the rate step resumes per response). Delete a step's record
to redo it.

Config (YAML or JSON); paths are relative to the config file; only `pairs` is required:

    run_dir: run                # default: the config file's folder / "run"
    rules: default              # a rule pool file, or ramo's default pool
    pairs: pairs.jsonl          # rated on every rule
    new_pairs: new.jsonl        # optional: labeled through the adapter (k rules per side)
    eval: eval.jsonl            # optional: RewardBench-schema evaluation set
    judge: {model: default, template: rule-last, normalize: vocab, dtype: float32,
            batch_size: 16, device: null}
    select: {k: 5, relevance: judge, encoder: default, discrepancy_weight: 0.5,
             relevance_weight: 1.0}
    adapter: {backbone: default, epochs: 5, learning_rate: 1.0e-4, batch_size: 16,
              max_length: 256, holdout: 0.2, seed: 0}
    rm: {model: default, epochs: 1, learning_rate: 2.0e-5, batch_size: 8, max_length: 256,
         center_rewards_coefficient: null, bf16: false, gradient_checkpointing: false, seed: 0}
    evaluation: {batch_size: 32, max_length: 256, baseline: true}
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

STEPS = ("rate", "select", "adapter-train", "adapter-apply", "label", "rm-train", "eval", "report")

_SECTIONS = {
    "judge": {"model": "default", "template": "rule-last", "normalize": "vocab",
              "dtype": "float32", "batch_size": 16, "device": None},
    "select": {"k": 5, "relevance": "judge", "encoder": "default", "discrepancy_weight": 0.5,
               "relevance_weight": 1.0},
    "adapter": {"backbone": "default", "epochs": 5, "learning_rate": 1.0e-4, "batch_size": 16,
                "max_length": 256, "holdout": 0.2, "seed": 0},
    "rm": {"model": "default", "epochs": 1, "learning_rate": 2.0e-5, "batch_size": 8,
           "max_length": 256, "center_rewards_coefficient": None, "bf16": False,
           "gradient_checkpointing": False, "seed": 0},
    "evaluation": {"batch_size": 32, "max_length": 256, "baseline": True},
}


@dataclass
class Config:
    pairs: Path
    run_dir: Path
    rules: str = "default"
    new_pairs: Path | None = None
    eval: Path | None = None
    judge: dict = field(default_factory=lambda: dict(_SECTIONS["judge"]))
    select: dict = field(default_factory=lambda: dict(_SECTIONS["select"]))
    adapter: dict = field(default_factory=lambda: dict(_SECTIONS["adapter"]))
    rm: dict = field(default_factory=lambda: dict(_SECTIONS["rm"]))
    evaluation: dict = field(default_factory=lambda: dict(_SECTIONS["evaluation"]))

    @classmethod
    def from_dict(cls, raw: Any, base: Path, where: str = "config") -> Config:
        """Validated; unknown keys are errors (a typo must not silently fall to a default)."""
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{where}: unknown settings {unknown}; the settings are {sorted(known)}")
        if not raw.get("pairs"):
            raise ValueError(f"{where}: `pairs` (the preference pairs to rate) is required")

        def path(key):
            value = raw.get(key)
            return None if value in (None, "") else (base / str(value))

        sections = {}
        for name, defaults in _SECTIONS.items():
            given = raw.get(name) or {}
            if not isinstance(given, dict):
                raise ValueError(f"{where}: `{name}` must be a mapping, got {type(given).__name__}")
            bad = sorted(set(given) - set(defaults))
            if bad:
                raise ValueError(f"{where}: unknown {name} settings {bad}; they are {sorted(defaults)}")
            sections[name] = {**defaults, **given}
        rules = str(raw.get("rules", "default"))
        return cls(pairs=path("pairs"), run_dir=path("run_dir") or base / "run",
                   rules=rules if rules == "default" else str(base / rules),
                   new_pairs=path("new_pairs"), eval=path("eval"), **sections)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Config:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        else:
            import yaml

            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"{path}: not valid YAML: {exc}") from exc
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
            import torch

            from ramo.judge import RuleJudge
            from ramo.rate import default_device

            settings = self.config.judge
            self._judge = RuleJudge.from_pretrained(
                settings["model"], dtype=getattr(torch, settings["dtype"]),
                device=default_device(settings["device"]), template=settings["template"],
                normalize=settings["normalize"], batch_size=int(settings["batch_size"]),
                progress=False)
        return self._judge

    def check_inputs(self) -> None:
        """Loads (and so validates) every input before the first step writes anything."""
        self.rules, self.pairs, self.new_pairs
        from ramo.select import check_k

        check_k(self.config.select["k"], self.rules, "select.k")
        ids = {p.id for p in self.pairs}
        both = sorted(ids & {p.id for p in self.new_pairs})
        if both:
            raise ValueError(f"pair ids in both pairs and new_pairs: {both[:5]}")
        holdout = self.config.adapter["holdout"]
        if not 0 <= holdout < 1:
            raise ValueError(f"adapter.holdout must be in [0, 1), got {holdout}")
        if self.config.eval is not None:
            from ramo.evaluation import load_eval_pairs

            load_eval_pairs(self.config.eval)

    # ---- running -------------------------------------------------------------------------

    def run(self, steps: tuple[str, ...] = STEPS) -> None:
        self.check_inputs()
        self.dir.mkdir(parents=True, exist_ok=True)
        from ramo.io.atomic import write_json

        write_json(self.path("config.json"), self.config.to_dict())
        for step in steps:
            if self.record(step) is not None and step != "report":
                self.log(f"[{step}] done before: skipped ({self.record_path(step)})")
                continue
            self.log(f"[{step}] ...")
            start = time.perf_counter()
            stats = getattr(self, "_" + step.replace("-", "_"))()
            if stats is None:  # nothing to do with this config (no new pairs, no eval set)
                self.log(f"[{step}] not configured: skipped")
                continue
            stats["seconds"] = round(time.perf_counter() - start, 2)
            write_json(self.record_path(step), stats)
            self.log(f"[{step}] done in {stats['seconds']:.1f} s")

    def _rate(self) -> dict:
        from ramo.rate import open_store, rate_into

        with open_store(self.path("ratings.sqlite"), self.judge) as store:
            before = store.count()
            rated = rate_into(store, self.judge, self.pairs, self.rules, progress=self.progress)
            count = store.count()
        return {"pairs": len(self.pairs), "rules": len(self.rules),
                "responses_rated_now": rated, "ratings_before": before, "ratings": count,
                "judge_calls_full": 2 * len(self.pairs) * len(self.rules),
                "judge": self.judge.describe(), "judge_fingerprint": self.judge.fingerprint()}

    def _select(self) -> dict:
        from ramo.io.atomic import write_jsonl
        from ramo.io.selections import selection_rows
        from ramo.ratings import RatingStore
        from ramo.select import label_agreement, select_pairs, summary

        settings = self.config.select
        with RatingStore.open_existing(self.path("ratings.sqlite")) as store:
            selection, _ = select_pairs(self.pairs, self.rules, store, **settings)
        write_jsonl(self.path("selections.jsonl"),
                    selection_rows([p.id for p in self.pairs], [r.id for r in self.rules], selection))
        self.log("  " + summary(self.pairs, selection.preference))
        pref = selection.preference
        return {"settings": settings, "pairs": len(self.pairs),
                "a_better": int((pref == 1).sum()), "b_better": int((pref == -1).sum()),
                "ties": int((pref == 0).sum()),
                "label_agreement": label_agreement(self.pairs, pref.tolist())}

    def _split(self) -> tuple[list[int], list[int]]:
        """(train, held-out) indices into pairs: a seeded shuffle, so resumes agree."""
        settings = self.config.adapter
        order = list(range(len(self.pairs)))
        random.Random(settings["seed"]).shuffle(order)
        held = int(round(settings["holdout"] * len(order)))
        return sorted(order[held:]), sorted(order[:held])

    def _adapter_train(self) -> dict:
        from ramo.adapter import RuleAdapter, adapter_metrics, metrics_markdown, train_adapter
        from ramo.io.atomic import write_json, write_text
        from ramo.io.selections import load_selections

        settings = dict(self.config.adapter)
        holdout, seed = settings.pop("holdout"), settings["seed"]
        k = self.config.select["k"]
        selections = {s["id"]: s["rule_ids"] for s in load_selections(self.path("selections.jsonl"))}
        train, held = self._split()
        train_pairs = [self.pairs[i] for i in train]
        log = train_adapter(train_pairs, [selections[p.id] for p in train_pairs], self.rules,
                            self.path("adapter"), k=k, progress=self.progress, **settings)
        stats = {"settings": {**settings, "holdout": holdout}, "train_pairs": len(train),
                 "heldout_pairs": len(held), "loss_history": log.get("loss_history", [])}
        if held:
            import torch

            from ramo.ratings import RatingStore

            held_pairs = [self.pairs[i] for i in held]
            adapter = RuleAdapter.from_pretrained(self.path("adapter"))
            predicted = adapter.predict(held_pairs, k=k)
            index = {r.id: j for j, r in enumerate(self.rules)}
            target = torch.tensor([[index[r] for r in selections[p.id]] + [-1] * (k - len(selections[p.id]))
                                   for p in held_pairs], dtype=torch.long)
            with RatingStore.open_existing(self.path("ratings.sqlite")) as store:
                scores, _ = store.to_tensors([p.id for p in held_pairs], [r.id for r in self.rules])
            labels = [p.label for p in held_pairs]
            metrics = adapter_metrics(predicted, target, scores[:, 0], scores[:, 1], k=k, seed=seed,
                                      labels=None if None in labels else torch.tensor(labels))
            write_json(self.path("adapter/metrics.json"), metrics)
            write_text(self.path("adapter/metrics.md"), metrics_markdown(metrics))
            self.log(metrics_markdown(metrics))
            stats["metrics"] = metrics
        return stats

    def _adapter_apply(self) -> dict | None:
        if not self.new_pairs:
            return None
        from ramo.adapter import RuleAdapter, apply_adapter
        from ramo.io.atomic import write_jsonl
        from ramo.rate import open_store
        from ramo.select import label_agreement, summary

        k = self.config.select["k"]
        adapter = RuleAdapter.from_pretrained(self.path("adapter"))
        with open_store(self.path("adapter_ratings.sqlite"), self.judge) as store:
            rows = apply_adapter(adapter, self.judge, self.new_pairs, self.rules, k=k,
                                 store=store, progress=self.progress)
        write_jsonl(self.path("adapter_selections.jsonl"), rows)
        import torch

        pref = torch.tensor([r["preference"] for r in rows])
        self.log("  " + summary(self.new_pairs, pref))
        n = len(self.new_pairs)
        return {"pairs": n, "k": k, "judge_calls": rows.judge_calls, "reused": rows.reused,
                "judge_calls_full": rows.full_calls,
                "a_better": int((pref == 1).sum()), "b_better": int((pref == -1).sum()),
                "ties": int((pref == 0).sum()),
                "label_agreement": label_agreement(self.new_pairs, pref.tolist())}

    def _label(self) -> dict:
        from ramo.io.atomic import write_jsonl
        from ramo.io.selections import load_selections
        from ramo.label import label_rows

        selections = load_selections(self.path("selections.jsonl"))
        if self.new_pairs:
            selections += load_selections(self.path("adapter_selections.jsonl"))
        rows, counts = label_rows(self.pairs + self.new_pairs, selections,
                                  [r.id for r in self.rules])
        if not rows:
            raise ValueError("every pair is a tie: there is nothing to train a reward model on")
        write_jsonl(self.path("labeled.jsonl"), rows)
        self.log(f"  {counts['labeled']} labeled pairs; {counts['ties_dropped']} ties dropped")
        return counts

    def _rm_train(self) -> dict:
        from ramo.reward import train_reward_model

        settings = self.config.rm
        log = train_reward_model(self.path("labeled.jsonl"), self.path("rm"),
                                 progress=self.progress, **settings)
        return {"settings": settings, "loss_history": log.get("loss_history", [])}

    def _eval(self) -> dict | None:
        if self.config.eval is None:
            return None
        from ramo.evaluation import evaluate, to_markdown
        from ramo.io.atomic import write_json, write_text

        settings = dict(self.config.evaluation)
        baseline = settings.pop("baseline")
        result = evaluate(self.path("rm"), self.config.eval, progress=self.progress, **settings)
        write_json(self.path("eval.json"), result)
        write_text(self.path("eval.md"), to_markdown(result))
        self.log(to_markdown(result))
        stats = {"result": result}
        if baseline:  # the backbone before training, with the head training started from
            from ramo.reward import load_reward_model

            untrained = load_reward_model(self.config.rm["model"], seed=self.config.rm["seed"])
            stats["baseline"] = evaluate(untrained, self.config.eval, progress=self.progress,
                                         **settings)
        return stats

    def _report(self) -> dict:
        from ramo.report import write_report

        paths = write_report(self)
        self.log(f"  report: {paths[0]}")
        return {"files": [str(p) for p in paths]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="pipeline config, YAML or JSON")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated steps to run, in order (default: all: {','.join(STEPS)})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_steps(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in steps if s not in STEPS]
    if bad or not steps:
        raise ValueError(f"unknown steps {bad}; the steps are {', '.join(STEPS)}")
    return steps


def run(args: argparse.Namespace) -> int:
    config = Config.from_file(args.config)
    Pipeline(config, progress=not args.no_progress).run(parse_steps(args.steps))
    return 0
