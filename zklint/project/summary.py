"""A module's summary: what other modules (and its own callers) need to know about it.

Built from the module's own `ModuleModel` (the same walk the rules use), with only the
module's name as outside knowledge, so it depends on nothing but the file's bytes and
can be cached by their digest. Anything the module cannot settle alone is written as a
reference to a project-wide name (``("call", "pkg.conn.connect")``: "whatever
pkg.conn.connect returns"); `zklint.project.solve` settles the references for the whole
project at once.

A value is described by a small tuple (a `Ref`), or None when it is not known:

- ``("client",)``          a KazooClient, by what the module alone shows
- ``("none",)``            the ``None`` placeholder (``self.zk = None`` in ``__init__``)
- ``("call", Q)``          the result of calling project function or class ``Q``
- ``("param", F, P)``      parameter ``P`` of project function ``F``
- ``("attr", C, A)``       ``self.A`` of project class ``C``
- ``("byo", R)``           bring your own client: a parameter, or ``R`` built here
"""

from __future__ import annotations

import ast
import pickle
import sys
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Dict, List, Optional, Set, Tuple

from zklint.facts import ENDS, OWNS, USES
from zklint.kazoo_api import BLOCKING_FUNCTIONS, BLOCKING_METHODS, SYNC_CLIENT_OPS, Api
from zklint.model import ModuleModel, Scope, _escapes_before_return, _own_client_branch, own_node_list, read_place

Ref = Optional[tuple]

# Client methods that decide who owns the client: a callee calling one of these on a
# client it is given is taking part in its lifecycle, not just using it.
LIFECYCLE_METHODS = frozenset({"start", "start_async", "restart", "stop", "close", "add_listener", "remove_listener"})
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"kazoo", "builtins"}
_MAX_DEPTH = 20
# Builtins that only look at what they are given.
_LOOKING_BUILTINS = frozenset({
    "isinstance", "issubclass", "type", "id", "repr", "str", "print", "hasattr", "callable", "bool", "hash", "format",
})
_UNSET = object()
_PROPERTY_DECORATORS = ("property", "functools.cached_property", "cached_property")


@dataclass
class FunctionSummary:
    params: List[str]  # positional parameters in order (self/cls included)
    kwonly: List[str] = field(default_factory=list)
    defaults: List[str] = field(default_factory=list)  # parameters with a default value
    bound: bool = False  # a method called through an instance (self/cls comes first)
    annotated_clients: List[str] = field(default_factory=list)
    returns: List[Ref] = field(default_factory=list)  # [] when it is not a plain function
    starts_returned: bool = False  # calls start() on what it returns
    # parameter -> its own effect (USES / OWNS) and the calls it is passed on to:
    # (callee, "#index" or keyword name)
    effects: Dict[str, str] = field(default_factory=dict)
    forwards: Dict[str, List[Tuple[str, str]]] = field(default_factory=dict)
    is_property: bool = False
    blocking: Optional[List[str]] = None  # [call, verb] of the first blocking call in its body
    callees: List[str] = field(default_factory=list)  # project functions its body calls
    # parameter -> the first synchronous client call made on it (``zk.get()``)
    synchronous: Dict[str, str] = field(default_factory=dict)


# Most functions have no facts of most kinds: these read-only empties stand in for them.
# The summarizer never sets an empty one (`_bare_function`); a function read from the
# cache's JSON drops its empty lists and tables as it is read (`_function_in`).
_EMPTY_LISTS = ("kwonly", "defaults", "annotated_clients", "returns", "callees")
_EMPTY_TABLES = ("effects", "forwards", "synchronous")
for _name in _EMPTY_LISTS:
    setattr(FunctionSummary, _name, ())
for _name in _EMPTY_TABLES:
    setattr(FunctionSummary, _name, MappingProxyType({}))


def _bare_function(params: List[str], bound: bool) -> FunctionSummary:
    """A summary with its parameters only, every other fact the class's default (read-only
    empties): the summarizer sets the facts a function has, and builds no empty list or
    table for the others."""
    function = FunctionSummary.__new__(FunctionSummary)
    function.params, function.bound = params, bound
    return function


def _compact(function: FunctionSummary) -> None:
    state = function.__dict__
    for name in _EMPTY_LISTS + _EMPTY_TABLES:
        if name in state and not state[name]:
            del state[name]


@dataclass
class CallSummary:
    callee: str
    args: List[Ref]
    keywords: Dict[str, Ref]
    starred: bool  # *args or **kwargs: the parameters it binds are not known


@dataclass
class ModuleSummary:
    module: str
    is_package: bool
    imports: Dict[str, str] = field(default_factory=dict)  # module-level name -> what it imports
    classes: Dict[str, List[str]] = field(default_factory=dict)  # class -> its bases
    # class -> attribute -> every value stored to self.<attribute> in its methods
    attributes: Dict[str, Dict[str, List[Ref]]] = field(default_factory=dict)
    functions: Dict[str, FunctionSummary] = field(default_factory=dict)
    calls: List[CallSummary] = field(default_factory=list)
    # module-level names bound once (what another module imports): name -> value, and
    # those whose start() runs at import time
    globals: Dict[str, Ref] = field(default_factory=dict)
    started_globals: List[str] = field(default_factory=list)
    escaped: Set[str] = field(default_factory=set)  # functions read as values, not called
    attribute_calls: Set[str] = field(default_factory=set)  # `<unknown>.name(...)` names
    has_listeners: bool = False

    def pack(self) -> bytes:
        """The summary as bytes (`unpack` reads them back): what a worker sends, and what
        its digest is taken of. The same summary built again packs to the same bytes
        (its sets are packed sorted). Its functions hold no empty list or table (the
        class's read-only empties stand in, see `_bare_function` and `_function_in`): the
        main process holds every module's summary, and unpickles each, with a few objects
        per function, not ten."""
        return pickle.dumps(self, protocol=4)

    @staticmethod
    def unpack(packed: bytes) -> "ModuleSummary":
        return pickle.loads(packed)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["escaped"], state["attribute_calls"] = sorted(self.escaped), sorted(self.attribute_calls)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.escaped, self.attribute_calls = set(self.escaped), set(self.attribute_calls)

    def digest(self, packed: Optional[bytes] = None) -> str:
        """Of the summary's content (`packed`, when at hand): what the project's facts are
        settled from. Equal digests, equal summaries; an equal summary with another
        digest (built by another Python) only costs the cache a miss."""
        import hashlib  # here: not needed where no file names kazoo

        return hashlib.blake2b(packed if packed is not None else self.pack(), digest_size=16).hexdigest()

    # -- JSON for the cache

    def to_json(self) -> dict:
        return {
            "module": self.module,
            "is_package": self.is_package,
            "imports": self.imports,
            "classes": self.classes,
            "attributes": {
                c: {a: [_ref_out(r) for r in v] for a, v in attrs.items()} for c, attrs in self.attributes.items()
            },
            "functions": {q: _function_out(f) for q, f in self.functions.items()},
            "calls": [
                [c.callee, [_ref_out(r) for r in c.args], {k: _ref_out(v) for k, v in c.keywords.items()}, c.starred]
                for c in self.calls
            ],
            "globals": {k: _ref_out(v) for k, v in self.globals.items()},
            "started_globals": list(self.started_globals),
            "escaped": sorted(self.escaped),
            "attribute_calls": sorted(self.attribute_calls),
            "has_listeners": self.has_listeners,
        }

    @classmethod
    def from_json(cls, data: dict) -> "ModuleSummary":
        return cls(
            module=data["module"],
            is_package=data["is_package"],
            imports=dict(data["imports"]),
            classes={k: list(v) for k, v in data["classes"].items()},
            attributes={
                c: {a: [_ref_in(r) for r in v] for a, v in attrs.items()} for c, attrs in data["attributes"].items()
            },
            functions={q: _function_in(f) for q, f in data["functions"].items()},
            calls=[CallSummary(c[0], [_ref_in(r) for r in c[1]], {k: _ref_in(v) for k, v in c[2].items()}, c[3])
                   for c in data["calls"]],
            globals={k: _ref_in(v) for k, v in data["globals"].items()},
            started_globals=list(data["started_globals"]),
            escaped=set(data["escaped"]),
            attribute_calls=set(data["attribute_calls"]),
            has_listeners=data["has_listeners"],
        )


def _ref_out(ref: Ref):
    if ref is None:
        return None
    return [_ref_out(part) if isinstance(part, tuple) else part for part in ref]


def _ref_in(data) -> Ref:
    if data is None:
        return None
    return tuple(_ref_in(part) if isinstance(part, list) else part for part in data)


def _function_out(f: FunctionSummary) -> dict:
    data = {item.name: getattr(f, item.name) for item in fields(FunctionSummary)}
    for name in _EMPTY_LISTS:
        data[name] = list(data[name])
    for name in _EMPTY_TABLES:
        data[name] = dict(data[name])
    data["returns"] = [_ref_out(r) for r in f.returns]
    data["forwards"] = {p: [list(x) for x in v] for p, v in f.forwards.items()}
    return data


def _function_in(data: dict) -> FunctionSummary:
    data = dict(data)
    data["returns"] = [_ref_in(r) for r in data["returns"]]
    data["forwards"] = {p: [tuple(x) for x in v] for p, v in data["forwards"].items()}
    function = FunctionSummary(**data)
    _compact(function)
    return function


# ---- building a summary ------------------------------------------------------------------


def summarize(model: ModuleModel) -> ModuleSummary:
    """The summary of the module `model` was built for (its facts name the module)."""
    return _Summarizer(model).run()


class _Summarizer:
    def __init__(self, model: ModuleModel) -> None:
        self.model = model
        module = model.facts.module or ""
        self.summary = ModuleSummary(module, model.facts.is_package)
        self.top = module.split(".")[0]
        self.depth = 0
        self.api = Api(model)
        self._callees: Dict[int, Optional[str]] = {}
        self._stopped: Optional[Set[str]] = None
        self._reads_by_function: Dict[int, list] = {}  # see _scan_reads

    def run(self) -> ModuleSummary:
        model, summary = self.model, self.summary
        for local, target in model.imports.items():
            if target is not None and model.module_scope.bindings.get(local) and self._project_name(target):
                summary.imports[local] = target
        self._scan_reads()
        for stmt in model.tree.body:
            if isinstance(stmt, ast.ClassDef):
                self._class(stmt)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._function(stmt)
        self._calls()
        self._globals()
        return summary

    def _globals(self) -> None:
        """Module-level clients another module may import, and which start at import."""
        model, summary = self.model, self.summary
        scope = model.module_scope
        for name, values in scope.bindings.items():
            if len(values) == 1 and isinstance(values[0], ast.expr) and not name.startswith("__"):
                ref = self.describe(values[0], scope)
                if ref is not None and ref[0] in ("client", "call"):
                    summary.globals[name] = ref
        for stmt in model.tree.body:  # top-level statements run at import (not under a __main__ guard)
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            if (
                isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "start"
                and isinstance(call.func.value, ast.Name) and call.func.value.id in summary.globals
            ):
                summary.started_globals.append(call.func.value.id)

    def _project_name(self, qualified: str) -> bool:
        """Could `qualified` name something of this project (not the stdlib, not kazoo)?"""
        head = qualified.split(".")[0]
        return head == self.top or head not in _STDLIB

    # -- classes and functions

    def _class(self, node: ast.ClassDef) -> None:
        model = self.model
        qual = model.local_qualname(node)
        if qual is None:
            return
        bases = []
        for base in node.bases:
            name = model.qualname(base) or model._local_class_qual(base)
            if name is not None:
                bases.append(name)
        self.summary.classes[qual] = bases
        scope = model.scopes[node]
        attributes: Dict[str, List[Ref]] = {}
        for method in node.body:
            if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._function(method)
                method_scope = model.scopes.get(method)
                self_name = method_scope.self_name if method_scope is not None else None
                if self_name is None:
                    continue
                for target, value in model.attribute_stores.get(method_scope, ()):
                    if target.value.id == self_name:
                        ref = self.describe(value, method_scope) if isinstance(value, ast.expr) else None
                        attributes.setdefault(target.attr, []).append(ref)
        for name, values in scope.bindings.items():
            if name in attributes:
                attributes[name].extend(self.describe(v, scope) if isinstance(v, ast.expr) else None for v in values)
        self.summary.attributes[qual] = attributes

    def _function(self, node) -> None:
        model = self.model
        qual = model.local_qualname(node)
        scope = model.scopes.get(node)
        if qual is None or scope is None:
            return
        args = node.args
        positional = [a.arg for a in args.posonlyargs + args.args]
        summary = _bare_function(positional, scope.self_name is not None)
        if args.kwonlyargs:
            summary.kwonly = [a.arg for a in args.kwonlyargs]
        defaults = positional[len(positional) - len(args.defaults):] if args.defaults else []
        if args.kwonlyargs:
            defaults += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        if defaults:
            summary.defaults = defaults
        annotated = [a for a in args.posonlyargs + args.args + args.kwonlyargs if a.annotation is not None]
        clients = [a.arg for a in annotated if model.is_client_annotation(a.annotation)] if annotated else None
        if clients:
            summary.annotated_clients = clients
        if node.decorator_list:
            summary.is_property = any(
                (model.qualname(d) or getattr(d, "id", "")) in _PROPERTY_DECORATORS for d in node.decorator_list
            )
        # the body's calls, returns and whether it is a generator (comprehensions over the
        # body's node list: most bodies have no return or yield, which the kinds tell at once)
        nodes = own_node_list(node)
        kinds = set(map(type, nodes))
        Call, Return = ast.Call, ast.Return
        calls = [n for n in nodes if n.__class__ is Call] if Call in kinds else []
        returns = [n.value for n in nodes if n.__class__ is Return and n.value is not None] if Return in kinds else []
        generator = ast.Yield in kinds or ast.YieldFrom in kinds
        if returns and isinstance(node, ast.FunctionDef) and not generator:
            if not _escapes_before_return(node, returns):  # handed to an owner before it is returned
                summary.returns = [self.describe(value, scope) for value in returns]
            if all(_started_in(calls, value) for value in returns):
                summary.starts_returned = True
        self._parameter_effects(node, scope, summary)
        self._waits(calls, scope, summary)
        self.summary.functions[qual] = summary

    def _waits(self, calls: List[ast.Call], scope: Scope, summary: FunctionSummary) -> None:
        """What in the body blocks (for callbacks that call this function from elsewhere):
        the first blocking call, the first synchronous call on each parameter and the
        project functions called, in the order they are written."""
        if not calls:
            return
        api = self.api
        params = {p for p in [*summary.params, *summary.kwonly] if len(scope.bindings.get(p, ())) == 1}
        maybe_blocking: List[ast.Call] = []
        synchronous: List[Tuple[int, int, str, str]] = []
        callees: List[Tuple[int, int, str]] = []
        Attribute, Name = ast.Attribute, ast.Name
        for node in calls:
            func = node.func
            if func.__class__ is Attribute:
                if func.attr in _BLOCKING_NAMES:
                    maybe_blocking.append(node)
                value = func.value
                if value.__class__ is Name and value.id in params and func.attr in SYNC_CLIENT_OPS:
                    synchronous.append((node.lineno, node.col_offset, value.id, func.attr))
            elif func.__class__ is Name and func.id in _BLOCKING_NAMES:
                maybe_blocking.append(node)
            callee = self._callee(func, scope)
            if callee is not None and self._project_name(callee):
                callees.append((node.lineno, node.col_offset, callee))
        for node in sorted(maybe_blocking, key=_position):
            verb = api.blocking_call(node, scope)
            if verb is not None:
                summary.blocking = [f"{_call_text(node)} on line {node.lineno}", verb]
                break
        if synchronous:
            first: Dict[str, str] = {}
            for line, _, name, attr in sorted(synchronous, key=_position_of_row):
                first.setdefault(name, f"{name}.{attr}() on line {line}")
            summary.synchronous = first
        if callees:
            summary.callees = list(dict.fromkeys(callee for _, _, callee in sorted(callees, key=_position_of_row)))

    def _lazy_global(self, name: str, scope: Scope) -> Ref:
        """``global _zk; _zk = KazooClient(...); _zk.start(); return _zk``: a module-level
        client built (lazily) by the function. The caller shares it with the module; when the
        module never stops it, nobody but the caller can: it is the caller's client."""
        values = scope.bindings.get(name, ())
        if not values or not all(isinstance(v, ast.expr) and self.model.is_client_expr(v, scope) for v in values):
            return None
        if self._stopped is None:
            self._stopped = _stopped_names(self.model)
        return None if name in self._stopped else ("client",)

    def _callee(self, func: ast.AST, scope: Scope) -> Optional[str]:
        """`model.callee`, asked once per call (the function pass and the module's calls)."""
        key = id(func)
        found = self._callees.get(key, _UNSET)
        if found is _UNSET:
            found = self._callees[key] = self.model.callee(func, scope)
        return found

    def _parameter_effects(self, node, scope: Scope, summary: FunctionSummary) -> None:
        params = [p for p in [*summary.params, *summary.kwonly] if p != scope.self_name]
        if not params:
            return
        model = self.model
        parents = model.parents()
        wanted = {p for p in params if len(scope.bindings.get(p, ())) == 1}
        effects = {p: USES for p in params}
        for p in params:
            if p not in wanted:
                effects[p] = OWNS  # rebound: what it holds later is not the caller's client
        forwards: Dict[str, List[Tuple[str, str]]] = {}
        ended: Dict[str, Set[str]] = {}  # parameter -> "stop"/"close" called on it unconditionally
        for read, read_scope in self._reads_by_function.get(id(node), ()):  # see _scan_reads
            if read.__class__ is not ast.Name or read.id not in wanted or effects[read.id] == OWNS:
                continue
            if read_scope is not scope:
                if model.lookup(read.id, read_scope) is scope:
                    effects[read.id] = OWNS  # a closure keeps it
                continue
            ending = _ending_call(read, parents, node)
            if ending is not None:
                ended.setdefault(read.id, set()).add(ending)
                continue
            effect, forward = self._classify(read, parents, scope)
            if forward is not None:
                forwards.setdefault(read.id, []).append(forward)
            elif effect == OWNS:
                effects[read.id] = OWNS
        for param, methods in ended.items():
            if effects[param] != OWNS:
                # stop() and close() both: the helper is where the client ends (a stop alone,
                # or a close alone, leaves the rest to someone: it may own the client)
                effects[param] = ENDS if methods == {"stop", "close"} else OWNS
        summary.effects = effects
        forwarded = {p: f for p, f in forwards.items() if effects.get(p) != OWNS}
        if forwarded:
            summary.forwards = forwarded

    def _classify(self, read: ast.Name, parents, scope: Scope) -> Tuple[str, Optional[Tuple[str, str]]]:
        """What the function does with its parameter at this read: USES, OWNS, or passes it
        on to (callee, slot) (the same places the client rules tell apart, `read_place`)."""
        model = self.model
        place = read_place(read, parents)
        if place.kind == "attribute":
            # a store, or the lifecycle (zk.stop() called or handed on as a value): OWNS
            return (OWNS, None) if place.store or place.attr in LIFECYCLE_METHODS else (USES, None)
        if place.kind == "argument":
            call = place.call
            if (model.qualname(call.func) or "").startswith("kazoo."):
                return USES, None  # recipes use their client; they never stop it
            func = call.func
            if isinstance(func, ast.Name) and func.id in _LOOKING_BUILTINS and model.lookup(func.id, scope) is None:
                return USES, None  # isinstance(zk, KazooClient), repr(zk): a look, not a hand-off
            callee = model.callee(call.func, scope)
            if callee is None:
                return OWNS, None
            slot = model.facts_parameter(callee, call, read)
            if slot is None:
                return OWNS, None
            return USES, (callee, slot)
        return (USES, None) if place.kind == "test" else (OWNS, None)

    # -- calls and reads across the module

    def _calls(self) -> None:
        model, summary = self.model, self.summary
        for site in model.calls:
            call = site.node
            func = call.func
            callee = self._callee(func, site.scope)
            if callee is None:
                if isinstance(func, ast.Attribute):
                    summary.attribute_calls.add(func.attr)
                continue
            if callee.startswith("kazoo.") or not self._project_name(callee):
                continue
            starred = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
            summary.calls.append(CallSummary(
                callee,
                [None if isinstance(a, ast.Starred) else self.describe(a, site.scope) for a in call.args],
                {k.arg: self.describe(k.value, site.scope) for k in call.keywords if k.arg is not None},
                starred,
            ))

    def _scan_reads(self) -> None:
        """One pass over the module's reads: those of parameter names filed under the
        summarised function (module-level def or method) they are in, for
        `_parameter_effects`; functions read as values (their callers may be anywhere)
        and listeners, for the summary."""
        model, summary = self.model, self.summary
        parents = model.parents()
        by_function: Dict[int, list] = {}
        owner_of: Dict[int, Tuple[Optional[int], Optional[str]]] = {}  # scope -> summarised function, its self
        quals = model.local_qualname
        params = set().union(*(scope.params for scope in model.scopes.values()))
        # only names that can stand for a function: defs of the module, and imports
        defined = {node.name for node in model.scopes if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        imported = model.imports
        Name, Attribute, Call = ast.Name, ast.Attribute, ast.Call
        parent_of = parents.get
        for read, scope in model.reads:
            if read.__class__ is Attribute:
                if read.attr == "add_listener":
                    summary.has_listeners = True
                if read.attr not in defined and not (read.value.__class__ is Name and read.value.id in imported):
                    continue
            elif read.__class__ is Name:
                if read.id in params:
                    owner = owner_of.get(id(scope))
                    if owner is None:
                        current: Optional[Scope] = scope
                        while current is not None and quals(current.node) is None:
                            current = current.parent
                        # (the function's own self is never one `_parameter_effects` follows)
                        owner = owner_of[id(scope)] = (
                            (id(current.node), current.self_name) if current is not None else (None, None)
                        )
                    if owner[0] is not None and read.id != owner[1]:
                        by_function.setdefault(owner[0], []).append((read, scope))
                if read.id not in defined and read.id not in imported:
                    continue
            parent = parent_of(read)
            if parent.__class__ is Call and parent.func is read:
                continue  # called
            if parent.__class__ is Attribute and parent.value is read:
                continue  # f.__name__, module.attr: not the function itself as a value
            self._read_as_value(read, scope)
        self._reads_by_function = by_function
        for node in model.scopes:
            decorators = getattr(node, "decorator_list", ())
            if any(isinstance(d, ast.Attribute) and d.attr == "add_listener" for d in decorators):
                summary.has_listeners = True
            if decorators and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = model.local_qualname(node)
                # decorators that keep the function called by its name where it is written
                known = (
                    "property", "staticmethod", "classmethod", "abstractmethod", "cached_property",
                    "contextmanager", "asynccontextmanager", "wraps", "lru_cache", "cache", "setter",
                )
                if qual is not None and any(_decorator_name(d) not in known for d in decorators):
                    summary.escaped.add(qual)  # a registry decorator may call it from anywhere

    def _read_as_value(self, read: ast.expr, scope: Scope) -> None:
        """A function of the module or a project name read as a value (neither called nor
        the object of an attribute): its callers may be anywhere (`escaped`)."""
        model, summary = self.model, self.summary
        if read.__class__ is ast.Name:
            target = model._called_function(read, scope)
        elif read.__class__ is ast.Attribute and read.value.__class__ is ast.Name:
            target = model._called_function(read, scope)
            if target is None and not isinstance(read.ctx, ast.Load):
                return
            if target is None:
                qual = model.qualname(read)
                if qual is not None and self._project_name(qual):
                    summary.escaped.add(qual)
                return
        else:
            return
        if target is not None:
            qual = model.local_qualname(target)
            if qual is not None:
                summary.escaped.add(qual)
        elif read.__class__ is ast.Name:
            qual = model.qualname(read)
            if qual is not None and self._project_name(qual):
                summary.escaped.add(qual)

    # -- values

    def describe(self, expr: ast.AST, scope: Scope) -> Ref:
        if self.depth > _MAX_DEPTH:
            return None
        self.depth += 1
        try:
            return self._describe(expr, scope)
        finally:
            self.depth -= 1

    def _describe(self, expr: ast.AST, scope: Scope) -> Ref:
        model = self.model
        if isinstance(expr, ast.Constant) and expr.value is None:
            return ("none",)
        if isinstance(expr, ast.Call):
            # a call of the project's is described by its callee even when this module
            # alone knows it makes a client: whether it also starts it is the project's to say
            callee = model.callee(expr.func, scope)
            if callee is not None and self._project_name(callee) and not callee.startswith("kazoo."):
                return ("call", callee)
        if model.is_client_expr(expr, scope):
            return ("client",)
        if isinstance(expr, ast.Call):
            return None
        own = _own_client_branch(expr)
        if own is not None:
            built, given = own
            if isinstance(given, ast.Name) and given.id in scope.params:
                inner = self.describe(built, scope)
                return ("byo", inner) if inner is not None else None
            return None
        if isinstance(expr, ast.Name):
            if expr.id in scope.global_names and scope.kind == "function":
                return self._lazy_global(expr.id, scope)
            owner = model.lookup(expr.id, scope)
            if owner is None:
                return None
            values = owner.bindings.get(expr.id, ())
            if expr.id in owner.params and len(values) == 1:
                qual = model.local_qualname(owner.node)
                return ("param", qual, expr.id) if qual is not None else None
            if len(values) == 1 and isinstance(values[0], ast.expr):
                return self.describe(values[0], owner)
            return None
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            cls = model.class_for_self(expr.value.id, scope)
            if cls is not None:
                qual = model.local_qualname(cls.node)
                return ("attr", qual, expr.attr) if qual is not None else None
        return None


# The last name of every call kazoo_api.blocking_call can recognise: a cheap test first.
_BLOCKING_NAMES = frozenset(
    [q.rpartition(".")[2] for q in BLOCKING_FUNCTIONS] + [m for methods in BLOCKING_METHODS.values() for m in methods]
)


def _position(node: ast.AST) -> Tuple[int, int]:
    return node.lineno, node.col_offset


def _position_of_row(row: tuple) -> Tuple[int, int]:
    """(line, column, ...) rows sorted by where they are written; stable for equal places
    (``f(x)(y)``: both calls start at the same place, the walk's order decides)."""
    return row[0], row[1]


def _call_text(call: ast.Call) -> str:
    text = ast.unparse(call.func)
    return ("…" + text[-39:] if len(text) > 40 else text) + "()"


def _ending_call(read: ast.Name, parents, function: ast.AST) -> Optional[str]:
    """"stop"/"close" for ``<read>.stop()``/``.close()`` as a statement that runs whenever
    the function runs to its end: in its body, or in a ``try`` there (body, handlers,
    finally), not under a condition or in a loop."""
    attribute = parents.get(read)
    call = parents.get(attribute) if isinstance(attribute, ast.Attribute) else None
    if not (isinstance(call, ast.Call) and call.func is attribute and attribute.attr in ("stop", "close")):
        return None
    statement = parents.get(call)
    if not isinstance(statement, ast.Expr):
        return None
    holder = parents.get(statement)
    while isinstance(holder, (ast.Try, ast.ExceptHandler)) or type(holder).__name__ == "TryStar":
        holder = parents.get(holder)
    return attribute.attr if holder is function else None


def _stopped_names(model: ModuleModel) -> Set[str]:
    """Names the module calls or passes ``<name>.stop`` on anywhere."""
    return {
        read.value.id for read, _ in model.reads
        if read.__class__ is ast.Attribute and read.attr == "stop" and read.value.__class__ is ast.Name
    }


def _decorator_name(decorator: ast.AST) -> str:
    while isinstance(decorator, ast.Call):
        decorator = decorator.func
    if isinstance(decorator, ast.Attribute):
        return decorator.attr
    return getattr(decorator, "id", "")


def _started_in(calls: List[ast.Call], value: ast.AST) -> bool:
    """Does the function call ``<value>.start()`` (value a name or self.<attr>)?"""
    text = _name_text(value)
    if text is None:
        return False
    for node in calls:
        if isinstance(node.func, ast.Attribute) and node.func.attr == "start":
            if _name_text(node.func.value) == text:
                return True
    return False


def _name_text(expr: ast.AST) -> Optional[str]:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        return f"{expr.value.id}.{expr.attr}"
    return None
