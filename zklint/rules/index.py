"""A module's calls by the qualified name they call, shared by the rule families.

Several rules look for the calls of a few known functions or classes (``os.fork``,
``gevent.monkey.patch_all``, ``KazooRetry``, ``DataWatch``...). Asking `model.qualname` of
every call of the module once per rule was a pass over all its calls each time; the index
is built in one pass, kept on the model (a ``_zk*`` attribute, dropped with the model), and
answers each rule with the few calls it wants.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

from zklint.model import CallSite, ModuleModel


def calls_to(model: ModuleModel, qualified: Iterable[str]) -> List[CallSite]:
    """The module's calls whose callee's `model.qualname` is one of `qualified`, in
    `model.calls` order."""
    index = _calls_by_qualname(model)
    found = [entry for name in set(qualified) for entry in index.get(name, ())]
    found.sort(key=lambda entry: entry[0])
    return [site for _, site in found]


def _calls_by_qualname(model: ModuleModel) -> Dict[str, List[Tuple[int, CallSite]]]:
    """qualified name -> (position in `model.calls`, call) of every call of it."""
    index = model.__dict__.get("_zk_calls_by_qualname")
    if index is None:
        index = model.__dict__["_zk_calls_by_qualname"] = {}
        qualname = model.qualname
        for position, site in enumerate(model.calls):
            qual = qualname(site.node.func)
            if qual is not None:
                index.setdefault(qual, []).append((position, site))
    return index
