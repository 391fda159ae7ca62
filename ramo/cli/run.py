"""`ramo pipeline` and `ramo demo`: the whole method from one command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ramo import demo as _demo_module
from ramo import pipeline as _pipeline_module
from ramo.cli._common import add_no_progress


def pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.pipeline import STEPS

    parser.add_argument("--config", required=True, type=Path, help="pipeline config, YAML or JSON")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated steps to run, in order (default: all: {','.join(STEPS)})")
    add_no_progress(parser)


def pipeline(args: argparse.Namespace) -> int:
    from ramo.pipeline import Config, Pipeline, parse_steps

    Pipeline(Config.from_file(args.config), progress=not args.no_progress).run(
        parse_steps(args.steps))
    return 0


def demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("ramo-demo"),
                        help="run folder (default: ./ramo-demo); a rerun resumes it")
    parser.add_argument("--live-ratings", action="store_true",
                        help="rate every pair with the judge here instead of starting from the "
                        "shipped ratings (about 25 minutes on 2 CPU cores)")
    parser.add_argument("--export-seed", type=Path, default=None, metavar="FOLDER",
                        help="for maintainers: write the run's ratings as the shipped seed "
                        "(ratings.jsonl.gz + ratings.meta.json) to FOLDER; with --live-ratings "
                        "after running, alone from an earlier --live-ratings run in --out")
    add_no_progress(parser)


def demo(args: argparse.Namespace) -> int:
    from ramo.demo import export_seed, prepare, run_demo

    if args.export_seed and not args.live_ratings:
        if not (args.out / "ratings.sqlite").is_file():  # checked before prepare writes
            raise ValueError(f"--export-seed alone exports an earlier --live-ratings run, and "
                             f"{args.out} holds none (no ratings.sqlite); run with "
                             "--live-ratings to rate and export")
        export_seed(prepare(args.out), args.export_seed)
        return 0
    pipeline = run_demo(args.out, live_ratings=args.live_ratings, progress=not args.no_progress)
    print(f"\nramo demo finished: report {args.out / 'report.md'}, plots in "
          f"{args.out / 'plots'}, reward model in {args.out / 'rm'}", file=sys.stderr)
    if args.export_seed:
        export_seed(pipeline, args.export_seed)
    return 0


# The modules' own texts are the commands' descriptions: the config (ramo.pipeline) and what
# the demo does (ramo.demo) are described once, there.
pipeline.__doc__ = _pipeline_module.__doc__ + "\n" + _pipeline_module.describe_sections()
demo.__doc__ = _demo_module.__doc__
