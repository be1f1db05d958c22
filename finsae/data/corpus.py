"""The text corpus for SAE training: FinanceDatabase business summaries of US-listed equities.

Several thousand company descriptions (NYSE, NYSE American, Nasdaq, and US companies' foreign
listings). Exact duplicates and very short texts are left out and counted in the report.
"""

from __future__ import annotations

import pandas as pd

from .errors import LoadReport
from .paths import data_dir


def load_corpus(min_chars: int = 200) -> pd.DataFrame:
    """DataFrame with columns id (symbol), name, text; one row per distinct summary."""
    d = data_dir() / "corpus"
    frames = []
    for file in ("us_exchange_equities.csv.gz", "us_companies_foreign_listings.csv.gz"):
        f = pd.read_csv(d / file, dtype=str, keep_default_na=False)
        frames.append(pd.DataFrame({"id": f["symbol"], "name": f["name"],
                                    "text": f["summary"].str.strip()}))
    raw = pd.concat(frames, ignore_index=True)
    report = LoadReport(source=str(d), n_read=len(raw))
    short = raw["text"].str.len() < min_chars
    for i in raw.index[short]:
        report.skip(f"summary shorter than {min_chars} characters", raw.at[i, "id"])
    kept = raw[~short]
    dup = kept["text"].duplicated()
    for i in kept.index[dup]:
        report.skip("duplicate summary", kept.at[i, "id"])
    out = kept[~dup].reset_index(drop=True)
    report.n_kept = len(out)
    out.attrs["report"] = report
    return out
