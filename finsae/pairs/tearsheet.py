"""Tear sheet per strategy: equity, drawdown, rolling Sharpe and trade statistics (one PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .inference import YEAR


def trade_stats(trades: pd.DataFrame, init_cash: float = 100.0) -> dict:
    """Count, win rate, mean/median P&L per trade (as a fraction of a slot's capital), mean
    holding days, profit factor (gross wins / gross losses) and fees paid, of pair trades."""
    if trades is None or len(trades) == 0:
        return {"trades": 0}
    pnl = trades["pnl"].astype(float) / init_cash
    wins, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
    return {"trades": int(len(pnl)), "win_rate": float((pnl > 0).mean()),
            "mean_pnl": float(pnl.mean()), "median_pnl": float(pnl.median()),
            "mean_days": float(trades["days"].mean()),
            "profit_factor": float(wins / losses) if losses > 0 else float("inf"),
            "fees": float(trades["fees"].sum() / init_cash)}


def rolling_sharpe(returns: pd.Series, window: int = YEAR) -> pd.Series:
    """Annualised Sharpe ratio of the last `window` daily returns."""
    r = returns.astype(float)
    m, s = r.rolling(window).mean(), r.rolling(window).std(ddof=1)
    return (m / s.where(s > 0)) * np.sqrt(YEAR)


def tear_sheet(returns: pd.Series, trades: pd.DataFrame | None, path: str | Path,
               title: str = "", interval: tuple[float, float] | None = None,
               init_cash: float = 100.0) -> Path:
    """Write a 2 x 2 PNG for one strategy's daily returns: growth of 1, drawdown, 1-year
    rolling Sharpe, and the distribution of trade P&L with the trade statistics."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = returns.fillna(0.0).astype(float)
    growth = (1 + r).cumprod()
    dd = growth / growth.cummax() - 1
    sd = r.std(ddof=1)
    sr = r.mean() / sd * np.sqrt(YEAR) if sd > 0 else float("nan")
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    head = f"{title}: Sharpe {sr:.2f}"
    if interval is not None:
        head += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    fig.suptitle(head + " after costs")
    ax[0, 0].plot(growth.index, growth.to_numpy(), lw=1)
    ax[0, 0].set_title("growth of 1 (committed capital)")
    ax[0, 1].fill_between(dd.index, dd.to_numpy(), 0, color="tab:red", alpha=0.5)
    ax[0, 1].set_title(f"drawdown (max {dd.min():.1%})")
    rs = rolling_sharpe(r)
    ax[1, 0].plot(rs.index, rs.to_numpy(), lw=1)
    ax[1, 0].axhline(0, color="k", lw=0.6)
    ax[1, 0].set_title("rolling 1-year Sharpe")
    st = trade_stats(trades, init_cash)
    if st["trades"]:
        ax[1, 1].hist(trades["pnl"].astype(float) / init_cash * 100, bins=40, color="tab:gray")
        ax[1, 1].axvline(0, color="k", lw=0.6)
        text = "\n".join([f"trades {st['trades']}", f"win rate {st['win_rate']:.1%}",
                          f"mean {st['mean_pnl']:.2%}", f"median {st['median_pnl']:.2%}",
                          f"days held {st['mean_days']:.1f}",
                          f"profit factor {st['profit_factor']:.2f}"])
        ax[1, 1].text(0.02, 0.97, text, transform=ax[1, 1].transAxes, va="top", fontsize=8,
                      family="monospace")
    ax[1, 1].set_title("trade P&L, % of a pair slot")
    for a in ax.flat:
        a.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
