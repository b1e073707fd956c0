"""Settle the modules' summaries into project-wide facts, and cut each module's view.

Every fact grows monotonically from nothing (no class is a client class, no function a
factory, no parameter a client), round after round, until a round changes nothing or
the bound is reached: the least fixed point, so a cycle (two factories returning each
other) proves nothing, and the order modules were read in never matters.
"""

from __future__ import annotations

import bisect
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from zklint.facts import ENDS, OWNS, USES, ModuleFacts, follow_aliases
from zklint.model import KAZOO_CLIENT
from zklint.project.summary import CallSummary, FunctionSummary, ModuleSummary, Ref

# Rounds of propagation: each round can carry a fact one call or one module further.
MAX_ROUNDS = 12


class Solution:
    """The project's facts, computed once from every module's summary."""

    def __init__(
        self,
        summaries: Iterable[ModuleSummary],
        mentioned_outside: Callable[[Tuple[str, ...]], bool] = lambda names: False,
    ) -> None:
        # Two files with one module name (scripts of the same name in two directories)
        # cannot be told apart by the names others import: neither gives facts.
        self.summaries: Dict[str, ModuleSummary] = {}
        self.ambiguous: Set[str] = set()
        for summary in summaries:
            if summary.module in self.summaries or summary.module in self.ambiguous:
                self.summaries.pop(summary.module, None)
                self.ambiguous.add(summary.module)
            else:
                self.summaries[summary.module] = summary
        # Could a project file the layer did not summarise (one that never names kazoo)
        # call this function? Asked with the names such a file would have to write: the
        # module's and the function's (`from pkg import conn` ... `conn.connect(zk)`), or
        # for a method, reached through any object, the method's alone.
        self.mentioned_outside = mentioned_outside
        self.aliases: Dict[str, str] = {}
        self._canonical: Dict[str, str] = {}  # see canonical
        self.functions: Dict[str, FunctionSummary] = {}
        self.classes: Dict[str, List[str]] = {}
        self.attributes: Dict[str, Dict[str, List[Ref]]] = {}
        self.calls: Dict[str, List[CallSummary]] = {}
        self.client_classes: Set[str] = set()
        self.factories: Dict[str, bool] = {}
        self.client_params: Set[Tuple[str, str]] = set()
        self.client_attrs: Dict[str, Set[str]] = {}
        self.param_effects: Dict[Tuple[str, str], str] = {}
        self.visible: Set[str] = set()
        self.has_listeners = any(s.has_listeners for s in self.summaries.values())
        self._collect()
        self._tabulate()
        self._propagate()
        self._effects()
        self._waits()
        # module-level clients (qual -> started at import): `from app.zk import client`
        self.module_clients: Dict[str, bool] = {}
        for module, summary in self.summaries.items():
            for name, ref in summary.globals.items():
                if self.is_client(ref):
                    self.module_clients[f"{module}.{name}"] = name in summary.started_globals or self._starts(ref)
        self._sorted_keys: Optional[Dict[str, List[str]]] = None

    # ---- gathering ----------------------------------------------------------------------

    def _collect(self) -> None:
        modules = self.summaries
        for module, summary in modules.items():
            for local, target in summary.imports.items():
                if target.split(".")[0] in self._tops():
                    self.aliases[f"{module}.{local}"] = target
        for summary in modules.values():
            self.functions.update(summary.functions)
            for cls, bases in summary.classes.items():
                self.classes[cls] = [self.canonical(b) for b in bases]
            self.attributes.update(summary.attributes)
        escaped: Set[str] = set()
        attribute_calls: Set[str] = set()
        for summary in modules.values():
            escaped.update(map(self.canonical, summary.escaped) if self.aliases else summary.escaped)
            attribute_calls |= summary.attribute_calls
            for call in summary.calls:
                self.calls.setdefault(self.canonical(call.callee), []).append(call)
        owner = {q: m for m, summary in modules.items() for q in summary.functions}
        for qual, function in self.functions.items():
            if qual not in self.calls:  # never called in the project: its callers are elsewhere
                continue
            short = qual.rpartition(".")[2]
            names = (short,) if function.bound else (owner[qual].rpartition(".")[2], short)
            if qual in escaped or self.mentioned_outside(names):
                continue
            if function.bound and short in attribute_calls:
                continue  # obj.<short>(...) on an object the analysis cannot type
            self.visible.add(qual)

    def _tops(self) -> Set[str]:
        cached = self.__dict__.get("_top_names")
        if cached is None:
            cached = self.__dict__["_top_names"] = {m.split(".")[0] for m in self.summaries}
        return cached

    def canonical(self, qualified: str) -> str:
        # Asked of the same names by every table and view; the aliases are fixed once the
        # imports are read (the first loop of `_collect`), which asks nothing.
        found = self._canonical.get(qualified)
        if found is None:
            found = self._canonical[qualified] = follow_aliases(self.aliases, qualified)
        return found

    # ---- clients, factories, client parameters --------------------------------------------

    def is_client(self, ref: Ref) -> bool:
        if ref is None:
            return False
        kind = ref[0]
        if kind == "client":
            return True
        if kind == "call":
            target = self.canonical(ref[1])
            return target in self.factories or target in self.client_classes
        if kind == "param":
            return (ref[1], ref[2]) in self.client_params or ref[2] in self._annotated(ref[1])
        if kind == "attr":
            return ref[2] in self.client_attrs.get(ref[1], ())
        if kind == "byo":
            return self.is_client(ref[1])
        return False

    def _annotated(self, function: str) -> List[str]:
        found = self.functions.get(function)
        return found.annotated_clients if found is not None else []

    def _starts(self, ref: Ref) -> bool:
        return ref is not None and ref[0] == "call" and self.factories.get(self.canonical(ref[1]), False)

    def _tabulate(self) -> None:
        """One pass over the functions for what the fixed points below look at: functions
        whose every return may be a client (an unknown value, None, never is), each
        parameter passed on with the parameters it reaches (None: not one the project can
        name), the project functions each calls, and what each says of itself."""
        self._returning: List[Tuple[str, FunctionSummary]] = []
        self._forwarded: List[Tuple[str, str, List[Tuple[str, Optional[Tuple[str, str]]]]]] = []
        self._calling: List[Tuple[str, List[Tuple[str, str]]]] = []
        self._own_blocking: Dict[str, Tuple[str, str]] = {}
        self._own_synchronous: Dict[Tuple[str, str], str] = {}
        self._client_properties: List[Tuple[str, str, FunctionSummary]] = []  # (class, name, property)
        canonical, parameter = self.canonical, self.parameter
        for qual, function in self.functions.items():
            if function.returns and None not in function.returns:
                self._returning.append((qual, function))
                if function.is_property:  # a property returning a client attribute
                    cls, _, name = qual.rpartition(".")
                    self._client_properties.append((cls, name, function))
            if function.forwards:  # (most functions have none of these)
                for param, forwards in function.forwards.items():
                    targets = [(callee, parameter(canonical(callee), slot)) for callee, slot in forwards]
                    self._forwarded.append((qual, param, targets))
            if function.callees:
                self._calling.append((qual, [(callee, canonical(callee)) for callee in function.callees]))
            if function.blocking:
                self._own_blocking[qual] = (function.blocking[0], function.blocking[1])
            if function.synchronous:
                for param, call in function.synchronous.items():
                    self._own_synchronous[(qual, param)] = call

    def _propagate(self) -> None:
        # What each round looks at, gathered once: only references that may turn out to
        # be clients and inheritance, which is fixed.
        returning = self._returning
        # per visible function and parameter, the value each call site passes
        passed: List[Tuple[str, str, List[Ref]]] = []
        for qual in self.visible:
            function = self.functions[qual]
            sites = self.calls.get(qual, ())
            if not sites:
                continue
            for param in [*function.params, *function.kwonly]:
                if param in function.defaults:
                    continue
                values = [self._argument(function, site, param) for site in sites]
                if None not in values:
                    passed.append((qual, param, values))
        returning_quals, passed_params = {q for q, _ in returning}, {(q, p) for q, p, _ in passed}
        stored: List[Tuple[str, str, List[Ref]]] = []  # class, attribute, the values stored
        properties: Dict[str, List[Tuple[str, FunctionSummary]]] = {}
        for cls, attributes in self.attributes.items():
            self.client_attrs.setdefault(cls, set())
            for attr, values in attributes.items():
                clients = [v for v in values if v != ("none",)]
                if clients and None not in clients and all(
                    self._may_become_client(v, returning_quals, passed_params) for v in clients
                ):
                    stored.append((cls, attr, clients))
        for cls, name, method in self._client_properties:
            if cls in self.attributes:
                properties.setdefault(cls, []).append((name, method))
        ancestors = {cls: self._ancestors(cls) for cls in self.classes}
        is_client = self.is_client
        for _ in range(MAX_ROUNDS):
            before = (len(self.client_classes), len(self.factories), sum(self.factories.values()),
                      len(self.client_params), sum(len(v) for v in self.client_attrs.values()))
            for cls, bases in self.classes.items():
                if any(b == KAZOO_CLIENT or b in self.client_classes for b in bases):
                    self.client_classes.add(cls)
            for qual, function in returning:
                returns = function.returns
                if all(is_client(r) for r in returns):
                    starts = function.starts_returned or all(self._starts(r) for r in returns)
                    self.factories[qual] = starts or self.factories.get(qual, False)
            for cls, attr, clients in stored:
                found = self.client_attrs[cls]
                if attr not in found and all(is_client(v) for v in clients):
                    found.add(attr)
            for cls, methods in properties.items():
                found = self.client_attrs[cls]
                for name, method in methods:
                    if all(is_client(r) for r in method.returns):
                        found.add(name)
            for cls, bases in ancestors.items():  # inherited attributes
                for base in bases:
                    inherited = self.client_attrs.get(base)
                    if inherited:
                        self.client_attrs.setdefault(cls, set()).update(inherited)
            for qual, param, values in passed:
                if (qual, param) not in self.client_params and all(is_client(v) for v in values):
                    self.client_params.add((qual, param))
            after = (len(self.client_classes), len(self.factories), sum(self.factories.values()),
                     len(self.client_params), sum(len(v) for v in self.client_attrs.values()))
            if after == before:
                return

    def _may_become_client(self, ref: Ref, returning: Set[str], passed: Set[Tuple[str, str]]) -> bool:
        """Could `is_client` ever say yes to `ref`, whatever the rounds find? Not to a call
        of what is neither a class nor a function whose returns may all be clients (the
        factories and client classes come from those), nor to a parameter no visible call
        site passes anything to and no annotation makes a client: the rounds need not ask
        about an attribute one such value is stored to."""
        while ref is not None and ref[0] == "byo":
            ref = ref[1]
        if ref is None:
            return False
        kind = ref[0]
        if kind == "call":
            target = self.canonical(ref[1])
            return target in returning or target in self.classes
        if kind == "param":
            return (ref[1], ref[2]) in passed or ref[2] in self._annotated(ref[1])
        return kind in ("client", "attr")

    def kept_defaults(self) -> Set[Tuple[str, str]]:
        """(function, parameter) whose default every call site keeps (no site passes it)."""
        found = self.__dict__.get("_kept")
        if found is None:
            found = set()
            for qual in self.visible:
                function = self.functions[qual]
                sites = self.calls.get(qual, ())
                positional = function.params[1:] if function.bound else function.params
                for param in function.defaults:
                    index = positional.index(param) if param in positional else len(positional)
                    if sites and all(
                        not site.starred and param not in site.keywords and index >= len(site.args) for site in sites
                    ):
                        found.add((qual, param))
            self.__dict__["_kept"] = found
        return found

    def _ancestors(self, cls: str) -> List[str]:
        found: List[str] = []
        todo = list(self.classes.get(cls, ()))
        while todo and len(found) < 50:
            base = todo.pop()
            if base in found or base not in self.classes:
                continue
            found.append(base)
            todo.extend(self.classes[base])
        return found

    @staticmethod
    def _argument(function: FunctionSummary, site: CallSummary, param: str, constructor: bool = False) -> Ref:
        """The value `site` passes for `param` (None when it passes none or cannot be told)."""
        if site.starred:
            return None
        if param in site.keywords:
            return site.keywords[param]
        positional = function.params[1:] if function.bound or constructor else function.params
        if param in positional:
            index = positional.index(param)
            if index < len(site.args):
                return site.args[index]
        return None

    # ---- what callees do with a client they are given -------------------------------------

    def _effects(self) -> None:
        """USES for a parameter the function (and every function it passes it on to) only
        calls operations on; OWNS otherwise. Least fixed point: a cycle of pure uses is USES."""
        # what each function says of its parameters, raised where they are passed on
        functions = self.functions
        effects: Dict[Tuple[str, str], str] = {}

        def effect_of(key: Tuple[str, str]) -> Optional[str]:
            found = effects.get(key)
            if found is None:
                function = functions.get(key[0])
                found = function.effects.get(key[1]) if function is not None else None
            return found

        # USES < OWNS: a parameter passed on takes the strongest effect of its callees (ENDS
        # only for the function that itself stops and closes it)
        rank = {USES: 0, ENDS: 1, OWNS: 2}
        for _ in range(MAX_ROUNDS):
            changed = False
            for qual, param, targets in self._forwarded:
                current = effect_of((qual, param)) or USES
                if current == OWNS:
                    continue
                for _, target in targets:
                    found = (effect_of(target) if target is not None else None) or OWNS
                    if found == ENDS:
                        found = OWNS  # passed on to the helper that ends it, maybe not always
                    if rank[found] > rank[current]:
                        current = effects[(qual, param)] = found
                        changed = True
            if not changed:
                break
        # The model acts on USES (the caller keeps the client) and ENDS (the call ends it);
        # anything else is "may own it". Only for a parameter some call passes a client to.
        given = self._given_clients()
        self.param_effects = {}
        for key in sorted(given):
            effect = effect_of(key)
            if effect in (USES, ENDS):
                self.param_effects[key] = effect

    def parameter(self, target: str, slot: str) -> Optional[Tuple[str, str]]:
        """(function, parameter name) that `slot` ("#index" or a keyword) of a call to
        `target` binds; a class call binds its __init__'s parameters."""
        function = self.functions.get(target)
        if function is None and target in self.classes:
            target = f"{target}.__init__"
            function = self.functions.get(target)
        if function is None:
            return None
        if slot.startswith("#"):
            positional = function.params[1:] if function.bound or target.endswith(".__init__") else function.params
            index = int(slot[1:])
            if index >= len(positional):
                return None
            return target, positional[index]
        if slot in function.params or slot in function.kwonly:
            return target, slot
        return None

    def _waits(self) -> None:
        """Functions that block, themselves or through the project functions they call;
        parameters a synchronous client call is made on, here or in a callee."""
        blocking = dict(self._own_blocking)
        synchronous = dict(self._own_synchronous)
        for _ in range(MAX_ROUNDS):
            changed = False
            for qual, callees in self._calling:
                if qual not in blocking:
                    for callee, target in callees:
                        found = blocking.get(target)
                        if found is not None and target != qual:
                            short = callee.rpartition(".")[2]
                            blocking[qual] = (f"{short}() (calls {found[0]})", found[1])
                            changed = True
                            break
            for qual, param, targets in self._forwarded:
                if (qual, param) in synchronous:
                    continue
                for callee, target in targets:
                    if target is not None and target in synchronous:
                        short = callee.rpartition(".")[2]
                        synchronous[(qual, param)] = f"{short}() (calls {synchronous[target]})"
                        changed = True
                        break
            if not changed:
                break
        self.blocking = blocking
        given = self._given_clients()
        self.synchronous = {k: v for k, v in synchronous.items() if k in given}

    def _given_clients(self) -> Set[Tuple[str, str]]:
        """(function, parameter) some call in the project passes a client to."""
        found = self.__dict__.get("_given")
        if found is None:
            found = set()
            for callee, sites in self.calls.items():
                function = self.functions.get(callee)
                if function is None and callee in self.classes:
                    callee = f"{callee}.__init__"
                    function = self.functions.get(callee)
                if function is None:
                    continue
                for site in sites:
                    for param in [*function.params, *function.kwonly]:
                        if self.is_client(self._argument(function, site, param, callee.endswith(".__init__"))):
                            found.add((callee, param))
            self.__dict__["_given"] = found
        return found

    # ---- one module's view ---------------------------------------------------------------

    def view(self, module: str) -> ModuleFacts:
        """The facts `module` can ask about, and no others (a module whose facts equal its
        own keeps its first lint): the names it calls, subclasses and imports, its own
        definitions, and the project-wide answers only where a parameter of its own may
        hold a client."""
        summary = self.summaries.get(module)
        if summary is None:
            return ModuleFacts(module=module)
        raw = set(summary.imports.values())
        raw.update(call.callee for call in summary.calls)
        for bases in summary.classes.values():
            raw.update(bases)
        aliases: Dict[str, str] = {}
        # every alias canonical() follows for these names, where it leads to a fact
        todo = [name for name in raw if self._leads_to_facts(name)]
        while todo:
            name = todo.pop()
            head = name
            while head:
                target = self.aliases.get(head)
                if target is not None and head not in aliases:
                    aliases[head] = target
                    todo.append(target + name[len(head):])
                head = head.rpartition(".")[0]
        targets = {self.canonical(name) for name in raw}
        targets.update(f"{t}.__init__" for t in list(targets) if t in self.classes)
        own = set(summary.functions)
        # small tables by prefix (an annotation or isinstance may name any class of a module
        # it imports); per-function tables only for the functions it reaches or defines
        prefixes = {module} | {self.canonical(t) for t in summary.imports.values()} | set(summary.imports.values())
        client_params = frozenset((q, name) for q, name in self.client_params if q in own)
        takes_clients = bool(client_params) or any(f.annotated_clients for f in summary.functions.values())
        # What the module's model works out by itself is left out (so that a module the
        # project tells nothing new keeps the answers it gave while it was summarised):
        # its own factories that do not start the client and return only what it builds,
        # its classes' own client attributes, its own functions that block themselves.
        factories = {q: self.factories[q] for p in prefixes | targets for q in self._under("factories", p)}
        for qual in own.intersection(factories):
            if not factories[qual]:
                if all(r is not None and r[0] == "client" for r in summary.functions[qual].returns):
                    del factories[qual]
        client_attrs = {}
        for qual in summary.classes:
            inherited = self.client_attrs.get(qual, set()) - set(summary.attributes.get(qual, ()))
            if inherited:
                client_attrs[qual] = frozenset(inherited)
        blocking = {q: self.blocking[q] for q in targets | own if q in self.blocking}
        for qual in own.intersection(blocking):
            if summary.functions[qual].blocking:
                del blocking[qual]
        return ModuleFacts(
            module=module,
            is_package=summary.is_package,
            aliases=aliases,
            client_classes=frozenset(q for p in prefixes for q in self._under("client_classes", p)),
            factories=factories,
            client_params=client_params,
            param_effects=self._by_slot("param_effects", targets | own),
            client_attrs=client_attrs,
            # asked only of parameters that hold a client (ZK102/ZK105: who else may listen)
            visible_callers=frozenset(q for q in own if q in self.visible) if takes_clients else frozenset(),
            kept_defaults=frozenset(k for k in self.kept_defaults() if k[0] in own),
            module_clients={q: self.module_clients[q] for q in targets if q in self.module_clients},
            project_has_listeners=self.has_listeners if takes_clients else True,
            blocking=blocking,
            synchronous=self._by_slot("synchronous", targets | own),
        )

    def _leads_to_facts(self, name: str) -> bool:
        """Does `name` stand for something the facts say anything about (under another name)?"""
        target = self.canonical(name)
        if target == name:
            return False
        known = self.__dict__.get("_fact_quals")
        if known is None:
            known = set(self.client_classes) | set(self.factories) | set(self.blocking)
            known.update(q for q, _ in self.param_effects)
            known.update(q for q, _ in self.synchronous)
            known.update(q.rpartition(".")[0] for q in list(known) if q.endswith(".__init__"))
            self.__dict__["_fact_quals"] = known
        return target in known or bool(self.client_attrs.get(target))

    def _by_slot(self, name: str, functions: Set[str]) -> Dict[Tuple[str, str], str]:
        """The entries of table `name` (function, parameter) for `functions`, by parameter
        name and by position ("#0"), as a call reaches them (a class call reaches its
        __init__)."""
        table: Dict[Tuple[str, str], str] = getattr(self, name)
        found: Dict[Tuple[str, str], str] = {}
        quals = self.__dict__.setdefault("_quals_of", {}).get(name)
        if quals is None:  # the functions the table speaks of: most of a module's have no entry
            quals = self.__dict__["_quals_of"][name] = {qual for qual, _ in table}
        for qual in functions & quals:
            function = self.functions.get(qual)
            if function is None:
                continue
            for param in [*function.params, *function.kwonly]:
                value = table.get((qual, param))
                if value is not None:
                    found[(qual, param)] = value
            positional = function.params[1:] if function.bound else function.params
            for index, param in enumerate(positional):
                value = table.get((qual, param))
                if value is not None:
                    found[(qual, f"#{index}")] = value
                    if qual.endswith(".__init__"):
                        found[(qual[: -len(".__init__")], f"#{index}")] = value
                        found[(qual[: -len(".__init__")], param)] = value
        return found

    def _under(self, table: str, prefix: str) -> List[str]:
        """Keys of `table` equal to `prefix` or below it (``prefix.``...), by bisection."""
        if self._sorted_keys is None:
            self._sorted_keys = {}
        keys = self._sorted_keys.get(table)
        if keys is None:
            keys = self._sorted_keys[table] = sorted(getattr(self, table))
        found = []
        start = bisect.bisect_left(keys, prefix)
        for key in keys[start:]:
            if key == prefix or key.startswith(prefix + "."):
                found.append(key)
            elif not key.startswith(prefix):
                break
        return found


def solve_alone(summary: ModuleSummary) -> ModuleFacts:
    """The facts a module gives itself, as if it were the whole project."""
    return Solution([summary]).view(summary.module)
