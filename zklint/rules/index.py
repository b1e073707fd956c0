"""The module's calls indexed by what they call, shared by the rule families.

Most rules look for the calls of a few known names: methods (``add_listener``,
``commit``, ``acquire``...) or qualified functions and classes (``os.fork``,
``gevent.monkey.patch_all``, ``KazooRetry``...). A pass over every call of the module per
rule was a large part of their cost; `CallIndex` makes each of those passes once per
model (kept in a ``_zk*`` attribute, dropped with the model) and hands each rule the few
calls it wants, in `model.calls` order.
"""

from __future__ import annotations

import ast
from typing import Dict, Iterable, List

from zklint.model import CallSite, ModuleModel


class CallIndex:
    """Positions in `model.calls` by callee name and by qualified callee."""

    def __init__(self, model: ModuleModel) -> None:
        self.model = model
        self._by_name: Dict[str, List[int]] = {}  # ``f(...)``/``x.f(...)``: "f"
        self._others: List[int] = []  # callee neither a name nor an attribute: a call, a lambda...
        self._by_qualname: Dict[str, List[int]] = {}
        by_name, by_qualname, qualname = self._by_name, self._by_qualname, model.qualname
        for position, site in enumerate(model.calls):
            func = site.node.func
            kind = func.__class__
            name = func.id if kind is ast.Name else func.attr if kind is ast.Attribute else None
            if name is None:
                self._others.append(position)
            else:
                by_name.setdefault(name, []).append(position)
            qual = qualname(func)
            if qual is not None:
                by_qualname.setdefault(qual, []).append(position)

    @classmethod
    def of(cls, model: ModuleModel) -> "CallIndex":
        return model.shared("_zk_call_index", lambda: cls(model))

    def calls(self, names: Iterable[str] = (), qualified: Iterable[str] = (), others: bool = False) -> List[CallSite]:
        """The calls, in `model.calls` order, of a name or attribute in `names`, or of a
        callee whose `model.qualname` is in `qualified`, or (`others`) of a callee that is
        neither a name nor an attribute."""
        positions = set()
        for name in set(names):
            positions.update(self._by_name.get(name, ()))
        for name in set(qualified):
            positions.update(self._by_qualname.get(name, ()))
        if others:
            positions.update(self._others)
        calls = self.model.calls
        return [calls[position] for position in sorted(positions)]


def calls_to(model: ModuleModel, qualified: Iterable[str]) -> List[CallSite]:
    """The module's calls of a callee whose `model.qualname` is one of `qualified`."""
    return CallIndex.of(model).calls(qualified=qualified)


def calls_named(model: ModuleModel, names: Iterable[str]) -> List[CallSite]:
    """The module's calls of a name or attribute in `names` (``f(...)``, ``x.f(...)``)."""
    return CallIndex.of(model).calls(names=names)
