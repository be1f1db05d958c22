"""The `finsae` command: one module per verb in this package, each with
``register(subparsers)`` adding its sub-command(s) and ``func(args) -> int`` set as default;
flags come from the library's config dataclasses (`options`), so each default is written once.
Modules are imported only when their verb runs, so `finsae --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..data.errors import DataError
from .common import common_inputs  # noqa: F401  (the verbs' modules outside this package)

#: verb -> (module providing register(), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("finsae.cli.data", "validate inputs and print coverage"),
    "backtest": ("finsae.cli.backtest", "cointegration pairs backtest per grouping method"),
    "similar": ("finsae.cli.similar", "nearest companies by SAE features, with explanations"),
    "features": ("finsae.cli.features",
                 "build company features; show, export and explain SAE features"),
    "cluster": ("finsae.cli.cluster", "cluster the universe (MST threshold, agglomerative, "
                                      "k-means, SIC/GICS labels)"),
    "evaluate": ("finsae.cli.evaluate", "peer R², kNN-10 and MeanCorr of clusters vs SIC, "
                                        "GICS, embeddings and baselines"),
    "encode": ("finsae.cli.encode", "LM activations of every company description (cached)"),
    "sae": ("finsae.cli.sae", "train and evaluate sparse autoencoders"),
    "run": ("finsae.cli.run", "the main job: encode, SAE, features, evaluate, backtest, report"),
}


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already names it."""

    def _get_help_string(self, action):
        help_ = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "default" not in help_.lower()):
            help_ += " (default: %(default)s)"
        return help_


def _with_defaults_shown(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = DefaultsFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _with_defaults_shown(sub)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `finsae` parser; only the verb being run is imported (its flags and defaults)."""
    parser = argparse.ArgumentParser(prog="finsae", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        if name == verb:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    _with_defaults_shown(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    own_process = argv is None      # the console script / python -m finsae, not a caller's
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.verb is None else 2
    if own_process:                 # keep freed memory for the next step (finsae/allocator.py)
        from ..allocator import tune_allocator
        tune_allocator()
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
        return rc
    except DataError as e:
        print(f"finsae: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`finsae data check | head -1`): end quietly, as cat does.
        # stdout is pointed at devnull so the interpreter's final flush does not complain.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (tests)
            pass
        return 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
