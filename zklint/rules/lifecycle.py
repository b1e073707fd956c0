"""ZK2: client lifecycle (start, stop, close)."""

from __future__ import annotations
