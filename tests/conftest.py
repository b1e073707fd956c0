"""Shared test setup: the cache is kept out of the trees the tests look at.

zklint writes `.zklint_cache/` at each project root by default; tests that check a run
writes nothing else (atomic writes, --diff, the sweep) would see it. Every test points
ZKLINT_CACHE_DIR at one directory of the session, outside the trees under test (a
cache never changes results, and sharing it keeps repeated checks of this repository
fast); tests/test_project_cache.py sets its own locations to test the cache itself.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zklint-cache")


@pytest.fixture(autouse=True)
def _cache_outside_the_tree(_session_cache_dir, monkeypatch):
    monkeypatch.setenv("ZKLINT_CACHE_DIR", str(_session_cache_dir))
