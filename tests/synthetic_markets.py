"""Synthetic prices with known cointegration, shared by the pairs tests."""

import numpy as np
import pandas as pd


def cointegrated_market(T: int, n: int = 3, seed: int = 0, phi: float = 0.5) -> pd.DataFrame:
    """Pairs (A_i, B_i): B = 1.5 A + 2 + AR(1) noise with coefficient phi (cointegrated);
    C_i random walks. Business days from 2010-01-04."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2010-01-04", periods=T)
    cols = {}
    for i in range(n):
        a = 50 + np.cumsum(rng.normal(scale=0.5, size=T))
        e = np.zeros(T)
        for t in range(1, T):
            e[t] = phi * e[t - 1] + rng.normal(scale=0.5)
        cols[f"A{i}"], cols[f"B{i}"] = a, 1.5 * a + 2 + e
        cols[f"C{i}"] = 60 + np.cumsum(rng.normal(scale=0.5, size=T))
    return pd.DataFrame(cols, index=idx)


def write_market_files(prices, folder):
    """`prices` and a companies table for its tickers (sub-industry = the ticker's digit, one
    sector) as prices.csv and companies.csv in `folder`; returns their paths."""
    prices = prices.copy()
    prices.index.name = "date"
    prices.to_csv(folder / "prices.csv")
    tickers = list(prices.columns)
    pd.DataFrame({"ticker": tickers, "description": [f"company {t}" for t in tickers],
                  "sic": [1000 + int(t[1]) for t in tickers],
                  "gics_sector": "S", "gics_industry_group": "G", "gics_industry": "I",
                  "gics_sub_industry": [f"sub{t[1]}" for t in tickers]}
                 ).to_csv(folder / "companies.csv", index=False)
    return folder / "companies.csv", folder / "prices.csv"
