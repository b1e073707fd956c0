"""ZK5: operations (transactions)."""

from __future__ import annotations
