"""Integration tests against a real ZooKeeper server (see conftest.py)."""
