"""The settings rules declare, in one table.

A rule's `options` is its slice of `RULE_OPTIONS` (`options_of`): flake8 declares every
one as a flake8 option, and a configuration's keys are checked against them, without
importing every rule module (a flake8 run over code without kazoo imports none). A test
holds the table equal to what the registered rules declare.
"""

from __future__ import annotations

from typing import Dict, Tuple

# key -> (type, default, help)
RULE_OPTIONS: Dict[str, Tuple[type, object, str]] = {
    "session-timeout-min": (float, 4.0, "ZK402: smallest KazooClient timeout= (seconds) accepted"),
    "session-timeout-max": (float, 60.0, "ZK402: largest KazooClient timeout= (seconds) accepted"),
}


def options_of(*keys: str) -> Dict[str, Tuple[type, object, str]]:
    return {key: RULE_OPTIONS[key] for key in keys}
