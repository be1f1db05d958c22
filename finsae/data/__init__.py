"""The data layer: companies, prices, returns, classifications, membership, corpus.

Every loader validates its input at the edge: a bad file raises one `DataError` naming the
file and the row or ticker; rows skipped on purpose are counted in ``attrs["report"]``.
"""

from .classifications import LEVELS, partition
from .companies import GICS_LEVELS, drop_duplicate_share_classes, load_companies
from .corpus import load_corpus
from .errors import DataError, LoadReport, UnknownTickerError
from .membership import sp500_members
from .prices import fetch_yfinance, known_price_fixes, load_prices, read_price_file
from .returns import clean_prices, log_returns, screen_returns
from .tickers import normalize_ticker, require_tickers
from .universe import evaluation_universe, universe_report

__all__ = [
    "DataError", "GICS_LEVELS", "LEVELS", "LoadReport", "UnknownTickerError", "clean_prices",
    "drop_duplicate_share_classes", "evaluation_universe", "fetch_yfinance", "known_price_fixes",
    "load_companies", "load_corpus", "load_prices", "log_returns", "normalize_ticker",
    "partition", "read_price_file", "require_tickers", "screen_returns", "sp500_members",
    "universe_report",
]
