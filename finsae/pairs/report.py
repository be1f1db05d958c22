"""The files of a backtest: CSV tables, backtest.json, equity and tear-sheet PNGs, report.html."""

from __future__ import annotations

import json
from pathlib import Path

from ..jsonable import jsonable, write_json


def write_outputs(folder: Path, res, summary: dict, tests: dict, combined=None,
                  intervals: dict | None = None, tearsheets: bool = True) -> None:
    """metrics.csv, selections.csv, trades.csv, equity.csv, sharpe_tests.csv, filters.csv,
    backtest.json, equity.png and one tearsheet_<strategy>.png per strategy in `folder`.
    combined: (returns, equity, metrics, trades) with seed groups collapsed (default: `res`'s
    own); intervals: per strategy dicts with "sharpe_ci" (shown on the tear sheets)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .tearsheet import tear_sheet

    R, E, M, T = combined if combined is not None else \
        (res.returns, res.equity, res.metrics, res.trades)
    folder.mkdir(parents=True, exist_ok=True)
    M.to_csv(folder / "metrics.csv")
    res.selections.to_csv(folder / "selections.csv", index=False)
    res.trades.to_csv(folder / "trades.csv", index=False)
    E.to_csv(folder / "equity.csv")
    if getattr(res, "filters", None) is not None:
        res.filters.to_csv(folder / "filters.csv")
    pd.DataFrame(tests).T.rename_axis("method").to_csv(folder / "sharpe_tests.csv")
    write_json(folder / "backtest.json", summary, indent=2)
    fig, ax = plt.subplots(figsize=(10, 5))
    growth = E / E.iloc[0]
    for m in growth.columns:
        ax.plot(growth.index, growth[m], label=f"{m} (Sharpe {float(M.loc[m, 'sharpe']):.2f})",
                lw=1.2)
    ax.set_title("Pairs trading equity per grouping method (after costs, committed capital)")
    ax.set_ylabel("growth of 1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "equity.png", dpi=120)
    plt.close(fig)
    if not tearsheets:
        return
    for m in R.columns:
        ci = (intervals or {}).get(m, {}).get("sharpe_ci")
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(m))
        tear_sheet(R[m], T[T["method"] == m], folder / f"tearsheet_{safe}.png", str(m),
                   interval=tuple(ci) if ci and None not in ci else None)
    write_html(folder, summary, M, getattr(res, "filters", None))


def write_html(folder: Path, summary: dict, metrics, filters) -> Path:
    """report.html in `folder`: the per-strategy table with intervals, the filter counts, the
    equity plot and every tear sheet (self-contained, opens offline)."""
    import pandas as pd

    from finsae.report.html import figure_html, paragraph, table_html, write_report

    from ..report.html import tear_sheets
    per = summary.get("methods", {})
    rows = {}
    for m, d in per.items():
        ci, dci = d.get("sharpe_ci") or [None, None], d.get("diff_ci") or [None, None]
        rows[m] = {"sharpe": d.get("sharpe"), "lo": ci[0], "hi": ci[1],
                   f"diff to {summary.get('baseline', 'baseline')}": d.get("diff_to_baseline"),
                   "diff lo": dci[0], "diff hi": dci[1], "trades": d.get("n_trades"),
                   "turnover": d.get("turnover"),
                   "return/period committed": d.get("period_return_committed"),
                   "return/period employed": d.get("period_return_employed")}
    table = pd.DataFrame(rows).T.astype(float).rename_axis("strategy")
    b = summary.get("bootstrap", {})
    meta = {"period": summary.get("period", ""), "periods": summary.get("n_periods", ""),
            "universe": summary.get("universe", ""), "prices": summary.get("prices", ""),
            "rules": ", ".join(summary.get("rules", [])),
            "intervals": f"{b.get('level', '')} {b.get('kind', '')}, {b.get('n_boot', '')} "
                         f"draws, mean block {b.get('mean_block_days', '')} days",
            "config": json.dumps(jsonable(summary.get("config", {})))}
    sections = [("Sharpe after costs with bootstrap intervals", [
        paragraph("Sharpe ratios of daily returns on committed capital, annualised at 252; "
                  "differences to the baseline under the same selection rule. "
                  + (summary.get("random_baseline") or ""), "note"),
        table_html(table)])]
    if filters is not None:
        sections.append(("Pair filters: pairs removed, summed over formation windows",
                         [table_html(filters.astype(float), "{:.0f}")]))
    sections.append(("Equity", [figure_html(folder / "equity.png", "growth of 1 per strategy")]))
    sections.append(("Tear sheets", tear_sheets(folder, "tearsheet_")))
    notes = [paragraph(n, "note") for n in summary.get("notes", [])]
    if notes:
        sections.append(("Notes", notes))
    return write_report(folder / "report.html", "finsae pairs backtest", sections, meta)
