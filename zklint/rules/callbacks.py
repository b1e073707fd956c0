"""ZK3: callbacks and kazoo's threads."""

from __future__ import annotations
