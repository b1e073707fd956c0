"""The rule registry. Importing a rule module registers its rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Type

if TYPE_CHECKING:
    from zklint.rules.base import Rule

# (The base module and its data types are imported by all_rules, not here: the
# configuration reads zklint.rules.options, and a flake8 worker on a project without
# kazoo needs nothing else of the package.)

_RULE_MODULES = (
    "zklint.rules.ephemeral",
    "zklint.rules.lifecycle",
    "zklint.rules.callbacks",
    "zklint.rules.retries",
    "zklint.rules.operations",
)


def all_rules() -> Dict[str, Type["Rule"]]:
    """Every rule class by code, sorted by code."""
    from zklint.rules.base import REGISTRY

    if not REGISTRY:
        import importlib

        for name in _RULE_MODULES:
            importlib.import_module(name)
    return dict(sorted(REGISTRY.items()))
