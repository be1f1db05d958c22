"""Self-contained HTML reports (`html`): tables and PNG figures inlined, used by the run report
(`finsae.pipeline.report`) and the backtest report (`finsae.pairs.report`)."""
