"""Pairs per second: finsae's batched Engle-Granger vs a loop over statsmodels' `coint`.

    python benchmarks/coint.py [--pairs 2000] [--days 252] [--lags 1|aic] [--synthetic]

Draws random pairs of bundled price series over the last `days` trading days of 2019 (or
synthetic random walks with --synthetic), runs both, checks that the statistics and p-values
agree (max abs difference) and prints the throughput ratio. Both orderings are not part of
this benchmark: one regression direction per pair, as one `coint` call does.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def pair_data(n_pairs: int, days: int, synthetic: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    if synthetic:
        x = np.cumsum(rng.normal(size=(days, n_pairs)), 0) + 100
        y = 1.2 * x + np.cumsum(rng.normal(size=(days, n_pairs)), 0) * rng.integers(0, 2, n_pairs)
        return y + rng.normal(size=(days, n_pairs)), x
    from finsae.data.prices import load_prices
    prices = load_prices(end="2019-12-31").iloc[-days:]
    prices = prices.loc[:, prices.notna().all()].to_numpy()
    i = rng.integers(0, prices.shape[1], size=(n_pairs, 2))
    i = i[i[:, 0] != i[:, 1]]
    return prices[:, i[:, 0]], prices[:, i[:, 1]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--days", type=int, default=252)
    ap.add_argument("--lags", default="1", help="fixed ADF lag (int) or aic/bic")
    ap.add_argument("--synthetic", action="store_true")
    args = ap.parse_args(argv)
    from statsmodels.tsa.stattools import coint

    from finsae.pairs.coint import engle_granger

    lags = args.lags if args.lags in ("aic", "bic") else int(args.lags)
    y, x = pair_data(args.pairs, args.days, args.synthetic)
    P = y.shape[1]
    engle_granger(y[:, :8], x[:, :8], lags=lags)  # warm-up
    t = time.perf_counter()
    ours = engle_granger(y, x, lags=lags)
    t_ours = time.perf_counter() - t
    kw = dict(autolag=lags) if isinstance(lags, str) else dict(maxlag=lags, autolag=None)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.array([coint(y[:, p], x[:, p], trend="c", **kw)[:2] for p in range(P)])
    t_sm = time.perf_counter() - t
    fin = np.isfinite(ref[:, 0])
    d_stat = np.max(np.abs(ours.statistic[fin] - ref[fin, 0]))
    d_p = np.max(np.abs(ours.pvalue - ref[:, 1]))
    print(f"{P} pairs x {args.days} days, lags={lags}")
    print(f"  finsae batched : {t_ours:8.3f} s  {P / t_ours:12.0f} pairs/s")
    print(f"  statsmodels    : {t_sm:8.3f} s  {P / t_sm:12.0f} pairs/s")
    print(f"  max |d stat| = {d_stat:.2e}, max |d p| = {d_p:.2e}, "
          f"equal: {d_stat < 1e-6 and d_p < 1e-6}")
    print(f"  speed-up: {t_sm / t_ours:.1f}x")
    return 0 if d_stat < 1e-6 and d_p < 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
