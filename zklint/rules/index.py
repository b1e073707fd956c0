"""The rules' questions to the module's call index (`zklint.model.CallIndex`): the calls of
a few known names or qualified callees, in `model.calls` order."""

from __future__ import annotations

from typing import Iterable, List

from zklint.model import CallIndex, CallSite, ModuleModel


def calls_to(model: ModuleModel, qualified: Iterable[str]) -> List[CallSite]:
    """The module's calls of a callee whose `model.qualname` is one of `qualified`."""
    return CallIndex.of(model).calls(qualified=qualified)


def calls_named(model: ModuleModel, names: Iterable[str]) -> List[CallSite]:
    """The module's calls of a name or attribute in `names` (``f(...)``, ``x.f(...)``)."""
    return CallIndex.of(model).calls(names=names)
