"""Options shared by several verbs: the input files and the feature set."""

from __future__ import annotations

import argparse


def common_inputs(p: argparse.ArgumentParser) -> None:
    """--companies / --prices / --json, shared by every verb that reads the universe."""
    p.add_argument("--companies", metavar="PATH", default=None,
                   help="companies CSV (ticker, description, optional name, sic, gics_*); "
                        "default: the bundled table")
    p.add_argument("--prices", metavar="PATH", default=None,
                   help="daily adjusted close, CSV or parquet, wide (date x ticker) or long "
                        "(date,ticker,close); default: the bundled 1999-2021 series")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def features_option(p: argparse.ArgumentParser) -> None:
    """--features DIR: the feature set a command reads, passed explicitly."""
    p.add_argument("--features", "--features-dir", dest="features", metavar="DIR", default=None,
                   help="the feature folder `finsae features build` printed (or a run's "
                        "features stage): its vectors (sae, hidden, embedding, tfidf) serve the "
                        "methods of those names; default: the bundled SAE features, for the "
                        "bundled companies only")


def feature_inputs(p: argparse.ArgumentParser) -> None:
    """--features DIR and the common inputs, for every command reading a feature build."""
    common_inputs(p)
    features_option(p)


def feature_universe(companies, prices, fs, what: str = "evaluation"):
    """The evaluation universe limited to the companies the feature set `fs` covers (every
    method is scored on the same companies), with the count left out said on stderr; None
    when no feature set is given (the whole universe)."""
    if fs is None:
        return None
    import sys

    from ..data.universe import evaluation_universe
    full = evaluation_universe(companies, prices)
    universe = [t for t in full if t in fs.tickers]
    if len(universe) < len(full):
        print(f"{what} universe: {len(universe)} of {len(full)} companies have vectors in the "
              f"feature set; {len(full) - len(universe)} without are left out for every "
              f"method", file=sys.stderr)
    return universe


def load_feature_set(folder):
    """The `FeatureSet` in `folder` (None: None, the bundled vectors are used)."""
    if folder is None:
        return None
    from ..features.store import FeatureSet
    return FeatureSet.load(folder, labels=False)


def settings_parser(subparsers, name: str, help_: str, description: str, settings, *,
                    skip=(), flags=None) -> argparse.ArgumentParser:
    """A verb reading the universe and a feature set, with one flag per field of the
    `settings` dataclass (the verbs evaluate, cluster and backtest)."""
    from .options import add_dataclass_flags
    p = subparsers.add_parser(name, help=help_, description=description)
    common_inputs(p)
    features_option(p)
    add_dataclass_flags(p, settings, skip=skip, flags=flags)
    return p
