"""libcst, imported on first use rather than at startup.

libcst takes about 0.13 s to import, more than a check-only run of most projects spends
on analysis, and only fixes use it (detection runs on `ast`). Modules that build fixes
write ``from zklint.lazy_import import libcst as cst`` instead of ``import libcst as
cst``: the first attribute read (``cst.parse_module``, ``cst.Dict``) imports libcst, and
from then on ``cst.X`` is libcst's own ``X``. A module-level use (``class
T(cst.CSTTransformer)``) would import it at once: define such classes on first use (see
`zklint.fixer.with_block_indent`). bench/run.py checks that a check-only run leaves
libcst unloaded.
"""

from __future__ import annotations

import importlib


class LazyModule:
    """A module's attributes, read from the module imported on first access."""

    def __init__(self, name: str) -> None:
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attr: str):
        # Only called for attributes not cached yet in this object's __dict__.
        module = importlib.import_module(self.__dict__["_lazy_name"])
        value = getattr(module, attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"


libcst = LazyModule("libcst")
