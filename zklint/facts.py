"""What the rest of the project tells one module: the answers of the project layer.

A `ModuleModel` sees one file. Whether `connect()` imported from another module hands
back a started client, whether an unannotated parameter always receives a client, or
whether a helper that is given the client keeps it, are facts about other modules (or
about this module's callers). `zklint.project` works them out for the whole project and
gives each module a `ModuleFacts`: plain data, small (only what that module can ask
about), picklable (it travels to worker processes) and comparable (the cache keys a
module's findings by it).

Without a project (an empty `ModuleFacts`) every answer is "not known", and the model
falls back on what the module itself shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional, Tuple

# What a callee does with a client it is given (`param_effects`): it only calls the
# client's operations (the caller keeps owning it), or anything else (stores, returns,
# starts/stops/closes it, registers listeners on it, passes it where the project cannot
# see): the callee may own it.
USES = "uses"
ENDS = "ends"  # it stops and closes the client on every path that returns: the client's end
OWNS = "owns"


@dataclass
class ModuleFacts:
    module: Optional[str] = None  # this module's dotted name; None outside a project
    is_package: bool = False  # an __init__.py: relative imports start at the module itself
    # re-exported name -> where it is defined (pkg.get_client -> pkg.connection.get_client)
    aliases: Dict[str, str] = field(default_factory=dict)
    client_classes: FrozenSet[str] = frozenset()  # project classes that are KazooClients
    # project functions and methods that return a client -> whether they start it first
    factories: Dict[str, bool] = field(default_factory=dict)
    # (function, parameter) that always receives a client: annotated, or every call site
    # in the project passes one and no caller can be out of sight
    client_params: FrozenSet[Tuple[str, str]] = frozenset()
    # (function, parameter) -> USES or ENDS, for parameters some caller passes a client to
    param_effects: Dict[Tuple[str, str], str] = field(default_factory=dict)
    # class -> attributes that hold a client, set in that class or a base class
    client_attrs: Dict[str, FrozenSet[str]] = field(default_factory=dict)
    # functions whose every caller the project shows (none passes them on as a value)
    visible_callers: FrozenSet[str] = frozenset()
    # module-level clients of other modules this module imports -> started at import time
    module_clients: Dict[str, bool] = field(default_factory=dict)
    # (function, parameter) whose default every call site in the project keeps
    kept_defaults: FrozenSet[Tuple[str, str]] = frozenset()
    # any state listener registered anywhere in the project (add_listener)
    project_has_listeners: bool = True
    # project functions that block, themselves or through a callee: qual -> (what, verb),
    # e.g. ("time.sleep() on line 4", "sleeps")
    blocking: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    # (function, parameter or "#index") -> the synchronous client call made on the
    # client passed there ("zk.get() on line 9"), in it or in a callee
    synchronous: Dict[Tuple[str, str], str] = field(default_factory=dict)

    def canonical(self, qualified: str) -> str:
        """Follow re-exports to the defining module."""
        return follow_aliases(self.aliases, qualified)

    def fingerprint(self) -> str:
        """A digest of every fact: equal digests, equal answers (the cache's key)."""
        import hashlib  # here: not needed where no file names kazoo

        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict:
        """Every fact as JSON data, in a canonical order (`from_json` reads it back)."""
        return {
            "module": self.module,
            "is_package": self.is_package,
            "aliases": sorted(self.aliases.items()),
            "client_classes": sorted(self.client_classes),
            "factories": sorted(self.factories.items()),
            "client_params": sorted(self.client_params),
            "param_effects": sorted((list(k), v) for k, v in self.param_effects.items()),
            "client_attrs": sorted((k, sorted(v)) for k, v in self.client_attrs.items()),
            "visible_callers": sorted(self.visible_callers),
            "kept_defaults": sorted(self.kept_defaults),
            "module_clients": sorted(self.module_clients.items()),
            "project_has_listeners": self.project_has_listeners,
            "blocking": sorted((k, list(v)) for k, v in self.blocking.items()),
            "synchronous": sorted((list(k), v) for k, v in self.synchronous.items()),
        }

    @classmethod
    def from_json(cls, data: dict) -> "ModuleFacts":
        return cls(
            module=data["module"],
            is_package=data["is_package"],
            aliases=dict(data["aliases"]),
            client_classes=frozenset(data["client_classes"]),
            factories=dict(data["factories"]),
            client_params=frozenset(tuple(p) for p in data["client_params"]),
            param_effects={tuple(k): v for k, v in data["param_effects"]},
            client_attrs={k: frozenset(v) for k, v in data["client_attrs"]},
            visible_callers=frozenset(data["visible_callers"]),
            kept_defaults=frozenset(tuple(p) for p in data["kept_defaults"]),
            module_clients=dict(data["module_clients"]),
            project_has_listeners=data["project_has_listeners"],
            blocking={k: tuple(v) for k, v in data["blocking"]},
            synchronous={tuple(k): v for k, v in data["synchronous"]},
        )


def follow_aliases(aliases: Dict[str, str], qualified: str) -> str:
    """`qualified` with re-exports followed to where it is defined: ``pkg.get_client`` ->
    ``pkg.connection.get_client``, also below an alias (``pkg.Client.method`` where
    ``pkg.Client`` is re-exported). Bounded: a cycle of aliases ends."""
    if not aliases:
        return qualified
    for _ in range(20):
        target = aliases.get(qualified)
        if target is None:
            head = qualified
            while "." in head:
                head = head.rpartition(".")[0]
                moved = aliases.get(head)
                if moved is not None:
                    target = moved + qualified[len(head):]
                    break
            if target is None:
                return qualified
        qualified = target
    return qualified


NO_FACTS = ModuleFacts()
