"""The rule registry. Importing a rule module registers its rules."""

from __future__ import annotations

from typing import Dict, Type

from zklint.rules.base import REGISTRY, Rule

_RULE_MODULES = (
    "zklint.rules.ephemeral",
    "zklint.rules.lifecycle",
    "zklint.rules.callbacks",
    "zklint.rules.retries",
    "zklint.rules.operations",
)


def all_rules() -> Dict[str, Type[Rule]]:
    """Every rule class by code, sorted by code."""
    if not REGISTRY:
        import importlib

        for name in _RULE_MODULES:
            importlib.import_module(name)
    return dict(sorted(REGISTRY.items()))
