"""Pairs per second: finsae's batched Engle-Granger vs a loop over statsmodels' `coint`.

    python benchmarks/coint.py [--sizes 2000,20000,all | --pairs N] [--lags 1,aic] [--days 252]
                               [--sm-sample 200] [--repeats 3] [--no-screen] [--synthetic]

Data: the bundled evaluation universe (`load_companies`, `load_prices`, `clean_prices`,
`evaluation_universe`) over one formation year, the last `days` trading days of 2019; the
tickers with a price on every one of those days. "all" = every ordered pair (a on b and b on a,
a != b) of those tickers; the smaller sizes are random samples of these ordered pairs. With
--synthetic, 505 random walks (half of them with a cointegrated partner) stand in for prices.

For each size and lag rule: finsae tests the whole batch in one `engle_granger` call (one
regression direction per pair, as one `coint` call does); statsmodels' `coint` is timed on a
random sample of `--sm-sample` pairs of that batch and its pairs/s extrapolated (its cost is a
loop, the same per pair at any batch size); the two are run alternately `--repeats` times and
the medians compared. The sample's statistics and p-values are checked against finsae's (max
abs difference, must be < 1e-6).

Then the full-universe screen: `finsae.pairs.select.test_pairs` on every unordered pair with
the default `SelectionConfig` (rule "eg": Engle-Granger in both orderings, so every ordered
pair, ADF lag by AIC; plus hedge ratio, half-life, Hurst, crossings and OU fit), timed end to
end from the formation prices to the table.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import pandas as pd


def formation_window(days: int, synthetic: bool, seed: int = 0) -> pd.DataFrame:
    """Prices (days x tickers) with no NaN: the universe over its last formation year."""
    if synthetic:
        rng = np.random.default_rng(seed)
        n = 505
        x = np.cumsum(rng.normal(size=(days, n)), 0) + 100
        partner = np.roll(x, 1, axis=1) * 1.2 + rng.normal(size=(days, n)) * 2
        x = np.where(np.arange(n) % 2 == 0, x, partner)
        return pd.DataFrame(x, columns=[f"S{i:03d}" for i in range(n)])
    from finsae.data import clean_prices, evaluation_universe, load_companies, load_prices
    companies, prices = load_companies(), load_prices()
    universe = evaluation_universe(companies, prices)
    window = clean_prices(prices).loc[:"2019-12-31"].iloc[-days:]
    window = window[[t for t in universe if t in window.columns]]
    return window.loc[:, window.notna().all()]


def ordered_pairs(n: int) -> np.ndarray:
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    return np.stack([i, j], 1)


def sm_coint(y, x, lags):
    from statsmodels.tsa.stattools import coint
    kw = dict(autolag=lags) if isinstance(lags, str) else dict(maxlag=lags, autolag=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([coint(y[:, p], x[:, p], trend="c", **kw)[:2]
                         for p in range(y.shape[1])])


def bench(values: np.ndarray, pairs: np.ndarray, lags, sm_sample: int, repeats: int,
          rng) -> dict:
    from finsae.pairs.coint import engle_granger
    P = len(pairs)
    y, x = values[:, pairs[:, 0]], values[:, pairs[:, 1]]
    sample = np.sort(rng.choice(P, size=min(sm_sample, P), replace=False))
    ys, xs = np.ascontiguousarray(y[:, sample]), np.ascontiguousarray(x[:, sample])
    engle_granger(y[:, :64], x[:, :64], lags=lags)  # warm-up, both
    sm_coint(ys[:, :2], xs[:, :2], lags)
    t_ours, t_sm = [], []
    for _ in range(repeats):  # alternate, so both see the same machine load
        t = time.perf_counter()
        ref = sm_coint(ys, xs, lags)
        t_sm.append((time.perf_counter() - t) / len(sample))
        t = time.perf_counter()
        ours = engle_granger(y, x, lags=lags)
        t_ours.append((time.perf_counter() - t) / P)
    fin = np.isfinite(ref[:, 0])
    d_stat = float(np.max(np.abs(ours.statistic[sample][fin] - ref[fin, 0]), initial=0.0))
    d_p = float(np.max(np.abs(ours.pvalue[sample] - ref[:, 1])))
    ours_s, sm_s = float(np.median(t_ours)), float(np.median(t_sm))
    return dict(pairs=P, lags=lags, finsae=1 / ours_s, statsmodels=1 / sm_s,
                ratio=sm_s / ours_s, d_stat=d_stat, d_p=d_p, sample=len(sample),
                finsae_s=ours_s * P)


def screen(window: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    from finsae.pairs.select import SelectionConfig, test_pairs
    pairs = list(itertools.combinations(window.columns, 2))
    t = time.perf_counter()
    table = test_pairs(window, pairs, SelectionConfig())
    return time.perf_counter() - t, table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2000,20000,all",
                    help="comma-separated batch sizes (ordered pairs); 'all' = every one")
    ap.add_argument("--pairs", help="one batch size (the old flag): same as --sizes PAIRS")
    ap.add_argument("--lags", default="1,aic", help="comma-separated ADF lags: ints, aic, bic")
    ap.add_argument("--days", type=int, default=252)
    ap.add_argument("--sm-sample", type=int, default=200,
                    help="pairs statsmodels is timed on per size (its rate is extrapolated)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-screen", action="store_true", help="skip the full-universe screen")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.pairs:
        args.sizes = args.pairs

    t = time.perf_counter()
    window = formation_window(args.days, args.synthetic, args.seed)
    t_load = time.perf_counter() - t
    values = window.to_numpy(dtype=float)
    every = ordered_pairs(values.shape[1])
    src = "synthetic random walks" if args.synthetic else \
        f"bundled evaluation universe, {window.index[0].date()} .. {window.index[-1].date()}"
    print(f"{values.shape[1]} tickers x {values.shape[0]} days ({src}; loaded in "
          f"{t_load:.1f} s): {len(every)} ordered pairs")
    print(f"statsmodels `coint` timed on {args.sm_sample} random pairs of each batch, pairs/s "
          f"extrapolated; finsae on the whole batch; median of {args.repeats} alternating runs")
    rng = np.random.default_rng(args.seed)
    rows = []
    for lags in args.lags.split(","):
        lags = lags.strip()
        lags = lags if lags in ("aic", "bic") else int(lags)
        for size in args.sizes.split(","):
            n = len(every) if size.strip() == "all" else min(int(size), len(every))
            pick = every if n == len(every) else every[np.sort(rng.choice(len(every), n,
                                                                          replace=False))]
            r = bench(values, pick, lags, args.sm_sample, args.repeats, rng)
            r["size"] = "all" if n == len(every) else str(n)
            rows.append(r)
            print(f"  lags={lags!s:4s} {r['size']:>5s} = {r['pairs']:7d} pairs: finsae "
                  f"{r['finsae']:9.0f} pairs/s ({r['finsae_s']:6.2f} s), statsmodels "
                  f"{r['statsmodels']:6.0f} pairs/s, ratio {r['ratio']:6.1f}x  "
                  f"(max |d stat| {r['d_stat']:.1e}, |d p| {r['d_p']:.1e})", flush=True)
    ok = all(r["d_stat"] < 1e-6 and r["d_p"] < 1e-6 for r in rows)
    print()
    print("| lags | pairs | finsae pairs/s | statsmodels pairs/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['lags']} | {r['pairs']:,}{' (all)' if r['size'] == 'all' else ''} | "
              f"{r['finsae']:,.0f} | {r['statsmodels']:,.0f} | {r['ratio']:.1f}x |")
    print(f"statistics and p-values equal to statsmodels (< 1e-6): {ok}; "
          f"lowest ratio {min(r['ratio'] for r in rows):.1f}x")
    if not args.no_screen:
        wall, table = screen(window)
        n_pairs = len(table)
        print(f"full-universe screen: test_pairs on {n_pairs:,} unordered pairs x both "
              f"orderings = {2 * n_pairs:,} ordered Engle-Granger tests (lags=aic) + filters' "
              f"statistics: {wall:.1f} s wall ({2 * n_pairs / wall:,.0f} ordered pairs/s); "
              f"{int((table['pvalue'] < 0.05).sum()):,} pairs with p < 0.05")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
