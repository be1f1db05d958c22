import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never write to the user's ~/.cache/finsae unless FINSAE_CACHE is set on purpose."""
    if "FINSAE_CACHE" not in os.environ:
        os.environ["FINSAE_CACHE"] = str(tmp_path_factory.mktemp("finsae_cache"))
    yield
