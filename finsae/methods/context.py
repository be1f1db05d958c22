"""The settings of one comparison (`EvaluateConfig`) and the data every method shares
(`EvalContext`: one universe, one return panel, the vectors of one feature set)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from ..data.errors import DataError
from ..evaluate import IN_SAMPLE, YEARS, ReturnPanel

#: the methods `finsae evaluate` scores when none are named
DEFAULT_METHODS = ("one_cluster", "random", "sic4", "sic3", "sic2", "sic_division",
                   "gics_sector", "gics_industry_group", "gics_industry", "gics_sub_industry",
                   "returns", "tfidf", "minilm", "sae")
LINKAGES = ("average", "ward", "complete", "single")


@dataclass
class EvaluateConfig:
    """How methods are compared: `finsae evaluate` / `finsae cluster` flags and the [evaluate]
    table of `finsae run`."""

    #: methods to score; vector methods also take the suffixes _kmeans, _mst, _mst_rolling
    #: (e.g. tfidf_mst) and a cluster count after @ (tfidf@gics_sector, minilm_kmeans@50)
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    #: scored years, first-last
    years: tuple[int, int] = (min(YEARS), max(YEARS))
    #: in-sample years that fix every choice (threshold, lookback, penalty); the other scored
    #: years are out of sample
    fit_years: tuple[int, int] = (min(IN_SAMPLE), max(IN_SAMPLE))
    #: returns correlated within a year for MeanCorr: M = 12 monthly, D = daily
    freq: str = "M"
    #: clusters for vector methods (none: the number of GICS sub-industries in the universe)
    k: int | None = None
    #: random partitions averaged for the random baseline
    n_seeds: int = 100
    #: agglomerative linkage of the vector methods on cosine distance: average, ward (on
    #: L2-normalised vectors), complete, single (chosen on 2001-2010:
    #: experiments/results/search.md)
    linkage: str = "average"
    #: MST methods: thresholds covering less than this share of the companies are never chosen
    min_coverage: float = 0.0
    #: MST methods: thresholds whose largest cluster holds more than this share of the
    #: companies (a giant component) are never chosen (1: no limit, the paper's protocol)
    max_cluster_share: float = 1.0
    #: bootstrap unit of the MeanCorr confidence intervals: year or cluster
    ci_by: str = "year"
    #: bootstrap draws of the confidence intervals
    n_boot: int = 2000

    def check(self, where=lambda name: name, path=None) -> "EvaluateConfig":
        """Type and range of every setting; `where(name)` names a setting in the error (a
        flag or a TOML key)."""
        from .. import config_check as cc
        self.years = cc.year_pair(self.years, where("years"), path=path)
        self.fit_years = cc.year_pair(self.fit_years, where("fit_years"), path=path)
        if self.fit_years[1] < self.years[0] or self.fit_years[0] > self.years[1]:
            # the in-sample years are those of fit_years that are scored: at least one
            raise DataError(f"{where('fit_years')} {self.fit_years[0]}-{self.fit_years[1]} "
                            f"must overlap {where('years')} {self.years[0]}-"
                            f"{self.years[1]}", path=path)
        cc.choice(self.freq, where("freq"), ("M", "D"), path=path)
        if self.k is not None:
            cc.integer(self.k, where("k"), minimum=2, path=path)
        cc.integer(self.n_seeds, where("n_seeds"), minimum=1, path=path)
        cc.choice(self.linkage, where("linkage"), LINKAGES, path=path)
        cc.number(self.min_coverage, where("min_coverage"), minimum=0, maximum=1, path=path)
        cc.number(self.max_cluster_share, where("max_cluster_share"), minimum=0, maximum=1,
                  strict_min=True, path=path)
        cc.choice(self.ci_by, where("ci_by"), ("year", "cluster"), path=path)
        cc.integer(self.n_boot, where("n_boot"), minimum=1, path=path)
        return self


def check_price_years(prices, years, source: str) -> None:
    """Every scored year has prices, else one error naming the file and its date range."""
    have = set(prices.index.year) if len(prices) else set()
    missing = [y for y in years if y not in have]
    if missing:
        span = (f"{len(prices)} days, {prices.index[0].date()} .. {prices.index[-1].date()}"
                if len(prices) else "no days")
        if len(missing) == 1:
            miss = f"year {missing[0]}"
        elif missing == list(range(missing[0], missing[-1] + 1)):
            miss = f"years {missing[0]}-{missing[-1]}"
        else:
            miss = "years " + ", ".join(map(str, missing[:6])) + (" ..." if len(missing) > 6
                                                                  else "")
        raise DataError(f"prices cover {span}: none in {miss} of the scored years "
                        f"{min(years)}-{max(years)}; scored years must lie within the prices",
                        path=source)


def year_range(pair) -> tuple[int, ...]:
    """(first, last) -> every year from first to last."""
    return tuple(range(int(pair[0]), int(pair[1]) + 1))


#: the names a `FeatureSet` gives the vectors the registry calls otherwise
FEATURESET_NAMES = {"minilm": "embedding"}


@dataclass
class EvalContext:
    """Inputs shared by every method of one comparison: one universe, one return panel, the
    vectors of one feature set (`features`, given explicitly; none: the bundled ones)."""

    companies: pd.DataFrame
    prices: pd.DataFrame
    universe: list[str] | None = None
    years: tuple = YEARS
    fit_years: tuple = IN_SAMPLE
    freq: str = "M"
    k: int | None = None
    n_seeds: int = 100
    seed: int = 0
    theta_grid: tuple | None = None  # None: quantiles of the MST edge z-scores
    min_coverage: float = 0.0
    max_cluster_share: float = 1.0
    #: linkage of the agglomerative clustering of vector methods (cosine distance)
    linkage: str = "average"
    #: a `finsae.features.store.FeatureSet` whose vectors the vector methods use first
    features: object = None
    #: (start, end) -> the tickers a formation window may use (set by the backtest)
    eligible: object = None
    #: the methods are used on windows only (the backtest): methods that can be rebuilt on a
    #: window (returns) skip the evaluation's per-year partitions and their in-sample choice
    windows_only: bool = False
    cache: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, companies, prices, cfg: EvaluateConfig, **kw) -> "EvalContext":
        return cls(companies, prices, years=year_range(cfg.years),
                   fit_years=year_range(cfg.fit_years), freq=cfg.freq, k=cfg.k,
                   n_seeds=cfg.n_seeds, linkage=cfg.linkage, min_coverage=cfg.min_coverage,
                   max_cluster_share=cfg.max_cluster_share, **kw)

    def __post_init__(self):
        if self.universe is None:
            from ..data.universe import evaluation_universe
            self.universe = evaluation_universe(self.companies, self.prices)
        self.universe = list(self.universe)
        unknown = pd.Index(self.universe).difference(self.companies.index)
        if len(unknown):
            raise DataError(f"universe ticker(s) not in the companies table: "
                            f"{', '.join(unknown[:5])}")
        if self.k is None:
            from ..cluster import matched_k
            self.k = matched_k(self.label("gics_sub_industry"))

    @cached_property
    def table(self) -> pd.DataFrame:
        """The companies of the universe."""
        return self.companies.loc[self.universe]

    @cached_property
    def panel(self) -> ReturnPanel:
        return ReturnPanel.from_prices(self.prices, self.universe, self.panel_years, self.freq)

    @cached_property
    def panel_years(self) -> list[int]:
        # the years before the first scored one feed the rolling selections
        first = int(self.prices.index.min().year) + 1
        return list(range(min(first, min(self.years)), max(self.years) + 1))

    @cached_property
    def peer_panel(self):
        """Daily returns per scored year for the every-firm peer metrics."""
        from ..evaluate.peers import PeerPanel
        return PeerPanel(self.daily_returns, self.universe, self.years)

    @cached_property
    def daily_returns(self) -> pd.DataFrame:
        from ..evaluate import screened_returns
        return screened_returns(self.prices, self.universe, "D")

    def label(self, level: str) -> pd.Series:
        from ..data.classifications import partition
        return partition(self.table, level)

    def has_vectors(self, name: str) -> bool:
        from .registry import VECTORS
        return name in self.cache or name in VECTORS or self._feature_name(name) is not None

    def _feature_name(self, name: str) -> str | None:
        if self.features is None:
            return None
        vectors = self.features.vectors
        for n in (name, FEATURESET_NAMES.get(name)):
            if n in vectors:
                return n
        return None

    def vectors(self, name: str) -> pd.DataFrame:
        """The company vectors `name` on the universe: the given feature set's, else the
        registry's (`VECTORS`)."""
        from .registry import VECTORS
        if name not in self.cache:
            fname = self._feature_name(name)
            if fname is not None:
                v = self.features.vectors[fname]
                missing = pd.Index(self.universe).difference(v.index)
                if len(missing):
                    raise DataError(f"the feature set has no {fname} vectors for "
                                    f"{len(missing)} universe companies "
                                    f"({', '.join(missing[:5])})")
            elif name in VECTORS:
                v = VECTORS[name](self)
            else:
                raise DataError(f"unknown vectors {name!r}; known: {', '.join(VECTORS)}")
            source = v.attrs.get("source")
            v = v.loc[self.universe]
            if source:
                v.attrs["source"] = source
            self.cache[name] = v
        return self.cache[name]
