"""The `ramo` command line: thin adapters from flags to the step functions (ramo/steps.py)."""

from __future__ import annotations

import argparse
import errno
import importlib
import inspect
import platform
import sys

# Command words -> (the module that implements them, its function, one-line help). A module
# has, per command, `<function>_arguments(parser)` and `<function>(args) -> int`; only the
# module of the command being run is imported, so `ramo info` and `ramo --help` stay fast.
COMMANDS = {
    ("rate",): ("ramo.cli.rating", "rate", "rate every pair's responses on every rule with a "
                "judge, into a resumable store"),
    ("ratings", "merge"): ("ramo.cli.store", "merge", "merge ratings stores of one judge "
                           "(a multi-process run's shards) into one"),
    ("ratings", "migrate"): ("ramo.cli.store", "migrate", "convert a ratings store of schema 1 "
                             "(keyed by pair) to the response-keyed one"),
    ("select",): ("ramo.cli.rating", "select", "select each pair's k rules of largest "
                  "discrepancy and label it"),
    ("adapter", "train"): ("ramo.cli.adapter", "train", "train a Rule Adapter on pairs and "
                           "their selected rules"),
    ("adapter", "apply"): ("ramo.cli.adapter", "apply", "predict each new pair's k rules and "
                           "have the judge rate only those"),
    ("label",): ("ramo.cli.rating", "label", "write TRL preference rows (chosen, rejected, "
                 "margin, rule_ids) from selections"),
    ("rm", "train"): ("ramo.cli.reward", "train", "train a Bradley-Terry reward model on "
                      "labeled pairs"),
    ("eval",): ("ramo.cli.reward", "evaluate", "score a reward model on a RewardBench-schema "
                "set"),
    ("explain",): ("ramo.cli.reward", "explain", "show the rules a rule-head reward model "
                   "selects for a pair"),
    ("rl", "train"): ("ramo.cli.rl", "train", "GRPO-train a policy against a ramo reward "
                      "model (TRL)"),
    ("rl", "eval"): ("ramo.cli.rl", "evaluate", "compare policies' replies to held-out safety "
                     "prompts: reward, refusal and compliance rates"),
    ("study", "selection"): ("ramo.cli.study", "selection", "compare rule-selection "
                             "strategies by their agreement with human labels"),
    ("pipeline",): ("ramo.cli.run", "pipeline", "run the whole method from a config, "
                    "resumably"),
    ("demo",): ("ramo.cli.run", "demo", "run the pipeline on the embedded defaults and write a "
                "report"),
}


def info() -> str:
    """What was built, what is usable here, and what each op dispatches to."""
    import torch

    import ramo
    from ramo import backends
    from ramo.ops import describe_dispatch

    built = backends.built()
    lines = [
        f"ramo {ramo.__version__}",
        f"python {platform.python_version()}, torch {torch.__version__} "
        f"(cuda {torch.version.cuda or 'none'}), "
        f"CUDA devices: {torch.cuda.device_count() if torch.cuda.is_available() else 0}",
    ]
    if backends.extension_error():
        lines.append(f"ramo._C failed to load: {backends.extension_error()}")
    lines.append("backends:")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for name in backends.BACKENDS:
        state = "built" if built.get(name, True) else "not built"
        usable = [d.type for d in devices if backends.unusable_reason(name, d) is None]
        lines.append(f"  {name:9s} {state:9s} usable on: {', '.join(usable) or 'nothing here'}")
    lines += describe_dispatch(devices)
    return "\n".join(lines)


DESCRIPTION = """\
Label preference pairs with data-adaptive safety rules and train reward models on them.

A judge model rates both responses of each pair (prompt, response A, response B) on a pool of
safety rules; for each pair the k rules on which the two responses differ most decide its
label. A Rule Adapter learns to pick those rules, so new pairs need only k judge calls per
side; the labeled pairs train a Bradley-Terry reward model, evaluated RewardBench-style.

Start with `ramo demo` (the whole method on embedded data), run it on your own data with
`ramo pipeline --config FILE`, or run the steps one by one: rate, select, adapter train,
adapter apply, label, rm train, eval. `ramo COMMAND --help` describes each command."""


def version() -> str:
    """The installed distribution's version; ramo.__version__ when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("ramo")
    except metadata.PackageNotFoundError:
        import ramo

        return getattr(ramo, "__version__", "unknown")


class _Version(argparse.Action):
    """--version, read only when asked (the fallback imports ramo, and so torch)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"ramo {version()}")
        parser.exit()


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ramo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print ramo's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", help="print the version, the built backends and the dispatch")
    words = [a for a in argv if not a.startswith("-")][:2]
    groups: dict[str, argparse._SubParsersAction] = {}
    for command, (module_name, function, summary) in COMMANDS.items():
        where = sub
        if len(command) == 2:
            if command[0] not in groups:
                words_of = [c[1] for c in COMMANDS if c[0] == command[0]]
                group = sub.add_parser(command[0], help=f"{' | '.join(words_of)} (ramo "
                                       f"{command[0]} COMMAND --help)")
                groups[command[0]] = group.add_subparsers(dest="subcommand", required=True,
                                                          metavar="COMMAND")
            where = groups[command[0]]
        parser_of_command = where.add_parser(command[-1], help=summary)
        if tuple(words[:len(command)]) == command:
            module = importlib.import_module(module_name)
            run = getattr(module, function)
            parser_of_command.description = inspect.cleandoc(run.__doc__ or "")
            parser_of_command.formatter_class = argparse.RawDescriptionHelpFormatter
            getattr(module, f"{function}_arguments")(parser_of_command)
            parser_of_command.set_defaults(run=run, words=" ".join(command))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv).parse_args(argv)
    if args.command == "info":
        print(info())
        return 0
    if getattr(args, "no_progress", False):
        from ramo.progress import hide_library_bars

        hide_library_bars()
    try:
        return args.run(args)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Every output is atomic and the store commits whole batches: what was there
            # before is intact, and the same command resumes once there is room.
            print(f"ramo {args.words}: error: no space left on the disk: {exc}",
                  file=sys.stderr)
            return 1
        # A path that cannot be read or written (missing, a folder, under a file, no
        # permission): one line naming it, exit code 2 like any bad input.
        print(f"ramo {args.words}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except (ValueError, ImportError) as exc:
        # Bad input, or an optional dependency that is missing (the message says what to
        # install): one clear line, not a traceback; nothing has been written for it.
        print(f"ramo {args.words}: error: {exc}", file=sys.stderr)
        return 2


def _os_error(exc: OSError) -> str:
    """'PATH: Is a directory' for the system's own errors; ramo's own messages as they are.
    Of two paths (a rename) the second is named: ramo writes a temporary and renames it onto
    the path that was given."""
    path = exc.filename2 if exc.filename2 is not None else exc.filename
    if exc.strerror and path is not None:
        return f"{path}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
