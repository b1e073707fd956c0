"""ZK1: ephemeral nodes, locks and session loss."""

from __future__ import annotations
