"""The run report: what went in, the comparison tables, the plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..report.html import figure_html, paragraph, table_html, tear_sheets, write_report


def write_run_report(out: Path, metrics: dict, stages) -> Path:
    inp, proto = metrics["inputs"], metrics["protocol"]
    meta = {
        "descriptions": f"{inp['companies']} (vintage: {inp['description_vintage']})",
        "prices": f"{inp['prices']} ({inp['price_dates'][0]} .. {inp['price_dates'][1]})",
        "in-sample years (every choice fixed here)": f"{proto['in_sample'][0]}-{proto['in_sample'][1]}",
        "out-of-sample years": f"{proto['out_of_sample'][0]}-{proto['out_of_sample'][1]}",
        "stages": ", ".join(f"{s.name} {'(cached)' if s.cached else ''}".strip() for s in stages),
    }
    ev = pd.DataFrame(metrics["evaluate"]["methods"]).T
    ev = ev.astype(float).sort_values("knn_r2_out_of_sample", ascending=False)
    peer_cols = [c for c in ev.columns if c.startswith(("peer_r2", "knn_r2", "excess_r2",
                                                         "delta_r2", "knn_corr", "peer_cov"))]
    mc_cols = [c for c in ev.columns if c not in peer_cols]
    won = pd.DataFrame(metrics["evaluate"].get("vs_gics", {})).T
    bt = pd.DataFrame(metrics["backtest"]["methods"]).T
    if "sharpe_ci" in bt.columns:  # bootstrap intervals, when the backtest stage gave them
        bt["sharpe_lo"] = [ci[0] if isinstance(ci, list) else None for ci in bt["sharpe_ci"]]
        bt["sharpe_hi"] = [ci[1] if isinstance(ci, list) else None for ci in bt["sharpe_ci"]]
    keep = [c for c in ("sharpe", "sharpe_lo", "sharpe_hi", "diff_to_baseline", "sortino",
                        "annual_return", "volatility", "max_drawdown", "n_trades", "win_rate",
                        "turnover") if c in bt.columns]
    bt = bt[keep].astype(float).sort_values("sharpe", ascending=False)
    sae = metrics["sae"]
    sae_rows = pd.DataFrame({"value": {k: v for k, v in sae.items() if not isinstance(v, dict)}})
    sections = [
        ("Company similarity: how well each firm's peers explain its returns", [
            paragraph(f"{metrics['evaluate']['universe']} companies, every method on the same "
                      f"universe, every firm scored every year (docs/evaluation.md). peer R²: "
                      f"R² of a firm's daily log returns on the mean of its cluster-mates (the "
                      f"market when it has none); kNN R²: the same with its 10 nearest "
                      f"neighbours by cosine (classifications: the finest level with a peer); "
                      f"ΔR²: gain over the market. Vector methods clustered by "
                      f"{metrics['evaluate'].get('linkage', 'average')} linkage into K = "
                      f"{metrics['evaluate']['k']} clusters. Differences under about 0.01 are "
                      f"year-to-year noise: read the years won.", "note"),
            table_html(ev[peer_cols].rename_axis("method")),
            *([paragraph("Paired against GICS sub-industry, out of sample: mean difference "
                         "and years won.", "note"),
               table_html(won.rename_axis("method"))] if len(won) else []),
            _fig(out, "evaluate_peer_r2_by_year.png", "peer R² and kNN-10 R² by year")]),
        ("Within-cluster return correlation (MeanCorr, the paper's metric)", [
            paragraph("Kept for comparison with the paper only: the unweighted figure rewards "
                      "catch-all clusters and leaving firms out; read it beside the "
                      "pair-weighted figure, coverage and the cluster count.", "note"),
            table_html(ev[mc_cols].rename_axis("method")),
            _fig(out, "evaluate_meancorr_by_year.png", "MeanCorr by year per method"),
            _fig(out, "evaluate_cluster_sizes.png", "cluster-size distributions")]),
        ("Pairs trading after costs", [
            paragraph(f"Walk-forward Engle-Granger pairs ({metrics['backtest']['period'][0]} .. "
                      f"{metrics['backtest']['period'][1]}, {metrics['backtest']['n_periods']} "
                      f"periods); hedge ratio and spread moments from the formation window only; "
                      f"costs on.", "note"),
            table_html(bt.rename_axis("method")),
            _fig(out, "backtest_equity.png", "equity per method")]),
        ("Pairs trading tear sheets", tear_sheets(out, "backtest_tearsheet_")),
        ("The SAE", [table_html(sae_rows, "{:.4g}")]),
    ]
    return write_report(out / "report.html", "finsae run report", sections, meta)


def _fig(out: Path, name: str, caption: str) -> str:
    p = out / name
    return figure_html(p, caption) if p.exists() else paragraph(f"({name} not produced)")
