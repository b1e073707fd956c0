"""The shared model of a module: imports, scopes, kazoo clients and callbacks.

Every rule asks this model the same questions ("is this expression a KazooClient?",
"which functions are state listeners?") instead of pattern-matching on its own, so the
answers are computed once per file and are consistent across rules.

The model is deliberately conservative. A name is a client only when *every* binding of
that name in its scope is a client construction (or ``None``, the usual placeholder in
``__init__``); anything it cannot see through (tuple unpacking, loop targets, values
from other modules) makes it answer "unknown", and rules stay silent on unknowns.
"""

from __future__ import annotations

import ast
import re
import weakref
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple, TypeVar, Union

from zklint.facts import NO_FACTS, ModuleFacts

KAZOO_CLIENT = "kazoo.client.KazooClient"
KAZOO_RETRY = "kazoo.retry.KazooRetry"
KAZOO_STATE = "kazoo.protocol.states.KazooState"

# Names kazoo.client re-exports from their defining modules (kazoo 2.11): code written
# `from kazoo.client import KazooRetry` means kazoo.retry.KazooRetry.
_CLIENT_REEXPORTS = {
    "ACL": "kazoo.security",
    "AuthFailedError": "kazoo.exceptions",
    "Barrier": "kazoo.recipe.barrier",
    "Callback": "kazoo.protocol.states",
    "ChildrenWatch": "kazoo.recipe.watchers",
    "ConfigurationError": "kazoo.exceptions",
    "ConnectionClosedError": "kazoo.exceptions",
    "ConnectionHandler": "kazoo.protocol.connection",
    "ConnectionLoss": "kazoo.exceptions",
    "Counter": "kazoo.recipe.counter",
    "DataWatch": "kazoo.recipe.watchers",
    "DoubleBarrier": "kazoo.recipe.barrier",
    "Election": "kazoo.recipe.election",
    "EventType": "kazoo.protocol.states",
    "KazooException": "kazoo.exceptions",
    "KazooRetry": "kazoo.retry",
    "KazooState": "kazoo.protocol.states",
    "KeeperState": "kazoo.protocol.states",
    "Lock": "kazoo.recipe.lock",
    "LockingQueue": "kazoo.recipe.queue",
    "MultiNonBlockingLease": "kazoo.recipe.lease",
    "NoNodeError": "kazoo.exceptions",
    "NodeExistsError": "kazoo.exceptions",
    "NonBlockingLease": "kazoo.recipe.lease",
    "Party": "kazoo.recipe.party",
    "Queue": "kazoo.recipe.queue",
    "ReadLock": "kazoo.recipe.lock",
    "Semaphore": "kazoo.recipe.lock",
    "SequentialThreadingHandler": "kazoo.handlers.threading",
    "SessionExpiredError": "kazoo.exceptions",
    "SetPartitioner": "kazoo.recipe.partitioner",
    "ShallowParty": "kazoo.recipe.party",
    "WatchedEvent": "kazoo.protocol.states",
    "WriteLock": "kazoo.recipe.lock",
    "WriterNotClosedException": "kazoo.exceptions",
}

FunctionNode = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda]
_FUNCTION_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_T = TypeVar("_T")
_DEF_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)
_DEFS_AND_CLASSES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

# How many links of a chain of aliases or factories the model follows before it answers
# "unknown"; keeps deep chains in generated code from exhausting the interpreter's stack.
_MAX_DEPTH = 50
_MISSING = object()

# A binding whose value the model cannot see (parameter, loop target, import, ...).
UNKNOWN = None


class Scope:
    """A module, class or function body and the names bound directly in it."""

    __slots__ = ("node", "kind", "parent", "bindings", "global_names", "nonlocal_names", "params", "_self_name")

    def __init__(self, node: ast.AST, kind: str, parent: Optional["Scope"]) -> None:
        self.node = node
        self.kind = kind  # "module" | "class" | "function"
        self.parent = parent
        # name -> every value bound to it here: an expression, a def/class node, or UNKNOWN
        self.bindings: Dict[str, List[Optional[ast.AST]]] = {}
        self.global_names: set = set()
        self.nonlocal_names: set = set()
        self.params: Dict[str, ast.arg] = {}
        self._self_name = _MISSING

    def bind(self, name: str, value: Optional[ast.AST]) -> None:
        self.bindings.setdefault(name, []).append(value)

    @property
    def enclosing_class(self) -> Optional["Scope"]:
        """For a method: the class scope it is defined in."""
        if self.kind == "function" and self.parent is not None and self.parent.kind == "class":
            return self.parent
        return None

    @property
    def self_name(self) -> Optional[str]:
        """The first parameter of a method (``self``/``cls``), if this is one."""
        # Asked for every self.<attr> the rules see; the node and parent never change.
        name = self._self_name
        if name is _MISSING:
            name = self._self_name = self._find_self_name()
        return name

    def _find_self_name(self) -> Optional[str]:
        if self.enclosing_class is None or isinstance(self.node, ast.Lambda):
            return None
        args = self.node.args.posonlyargs + self.node.args.args
        if not args:
            return None
        for deco in self.node.decorator_list:
            if isinstance(deco, ast.Name) and deco.id == "staticmethod":
                return None
        return args[0].arg

    def __repr__(self) -> str:
        name = getattr(self.node, "name", self.kind)
        return f"<Scope {self.kind} {name}>"


@dataclass(frozen=True)
class ClientKey:
    """Identity of one client variable: a name in a scope, or an attribute of a class."""

    kind: str  # "name" | "attr"
    scope_id: int
    name: str
    scope: Scope = field(compare=False, hash=False, repr=False)


class CallSite(NamedTuple):
    """A call and the scope it is written in (one per call of the module: a tuple)."""

    node: ast.Call
    scope: Scope


class CallbackKind(Enum):
    STATE_LISTENER = "state listener"  # add_listener: runs on the connection thread
    WATCH = "watch callback"  # watch= of get/exists/get_children: the callback worker
    DATA_WATCH = "DataWatch function"
    CHILDREN_WATCH = "ChildrenWatch function"
    TREE_CACHE = "TreeCache listener"
    COMPLETION = "rawlink callback"  # rawlink of an async result: the completion worker


@dataclass(frozen=True)
class Callback:
    kind: CallbackKind
    function: FunctionNode
    client: Optional[ClientKey]
    registration: ast.AST  # the call or decorator that registers it


_WATCH_METHODS = {
    "get": 1, "get_async": 1, "exists": 1, "exists_async": 1,
    "get_children": 1, "get_children_async": 1,
}
_RECIPE_WATCHERS = {
    "kazoo.recipe.watchers.DataWatch": CallbackKind.DATA_WATCH,
    "kazoo.recipe.watchers.ChildrenWatch": CallbackKind.CHILDREN_WATCH,
}


class ModuleModel:
    """Facts about one parsed module. Build once, query from every rule."""

    def __init__(self, tree: ast.Module, facts: Optional[ModuleFacts] = None) -> None:
        self.tree = tree
        # What the project says about names this module uses (see zklint.facts); empty
        # facts make every such answer "not known".
        self.facts = facts if facts is not None else NO_FACTS
        self._local_quals: Optional[Dict[int, str]] = None
        self.imports: Dict[str, Optional[str]] = {}  # local name -> qualified name (None: ambiguous)
        self.module_scope = Scope(tree, "module", None)
        self.scopes: Dict[ast.AST, Scope] = {tree: self.module_scope}
        self.calls: List[CallSite] = []
        # Every Name and attribute expression the collector meets, with the scope that
        # evaluates it, in collection order (parameter and return annotations excluded;
        # Names bound by an assignment are not expressions it meets): the rules' index of
        # variable uses is built from this instead of walking the module again.
        self.reads: List[Tuple[ast.expr, Scope]] = []
        self.assignments: List[Tuple[ast.Assign, Scope]] = []  # every `a = b` statement
        self.withs: List[Tuple[ast.stmt, Scope]] = []  # every `with` / `async with` statement
        # scope -> every (`<name>.<attr>` target, value or UNKNOWN) stored to in it
        self.attribute_stores: Dict[Scope, List[Tuple[ast.Attribute, Optional[ast.AST]]]] = {}
        self.classes: Dict[str, Optional[ast.ClassDef]] = {}  # module-level classes (None: ambiguous)
        self._qualnames: Dict[ast.AST, Optional[str]] = {}
        forget_latest_model()  # (unless a check forgot it already, when it was done with its file)
        _PREVIOUS_MODEL[0] = weakref.ref(self)
        _Collector(self).collect(tree)
        # the names some def or class of the module (at any depth) is bound to (see callee)
        self._def_names = {node.name for node in self.scopes if isinstance(node, _DEFS_AND_CLASSES)}
        self._client_names: Dict[Tuple[int, str], Optional[bool]] = {}
        self._client_attrs: Dict[Tuple[int, str], Optional[bool]] = {}
        self._self_assignment_index: Dict[int, Dict[str, List[Tuple[Optional[ast.AST], Scope]]]] = {}
        self._client_classes: Optional[set] = None
        self._factories: Dict[int, Optional[bool]] = {}
        self._depth = 0
        self._client_calls: Optional[List[Tuple[CallSite, ClientKey, str]]] = None
        self._callbacks: Optional[List[Callback]] = None
        self._client_reads: Optional[List[Tuple[ast.expr, Scope, ClientKey]]] = None
        self._read_keys: Dict[tuple, Optional[ClientKey]] = {}  # see read_key
        self._attribute_chains: set = set()
        # the names some method's self (or cls) goes by: no other name is ever one (class_for_self)
        self._self_names = frozenset(
            scope.self_name for scope in self.scopes.values()
            if scope.parent is not None and scope.parent.kind == "class" and scope.kind == "function"
        )
        self._parents = self._index_bodies()

    def shared(self, name: str, build: Callable[[], _T]) -> _T:
        """A fact several rules share, built once per model by `build` and kept in the
        attribute `name` (``_zk*``: dropped when the next model is built or the facts
        change, see `forget_latest_model`)."""
        found = self.__dict__.get(name)
        if found is None:
            found = self.__dict__[name] = build()
        return found

    def use_facts(self, facts: ModuleFacts) -> None:
        """Answer from now on with `facts` (same module name): forget every answer given so far.

        The project layer summarises a module with the facts it has alone, then lints the
        same model with the project's: the collector's walk and the index are kept.
        """
        assert facts.module == self.facts.module and facts.is_package == self.facts.is_package
        if facts == self.facts:
            return  # nothing new: every answer given so far stands
        # Qualified names change only with the facts' aliases; local names (the module's
        # name is the same) and the index of self assignments not at all: kept.
        if facts.aliases != self.facts.aliases:
            self._qualnames.clear()
        self.facts = facts
        self._client_names.clear()
        self._client_attrs.clear()
        self._client_classes = None
        self._factories.clear()
        self._client_calls = None
        self._callbacks = None
        self._client_reads = None
        self._read_keys.clear()
        self._attribute_chains = set()
        for name in [name for name in self.__dict__ if name.startswith("_zk")]:
            del self.__dict__[name]

    # ---- imports and qualified names ---------------------------------------------

    def qualname(self, expr: ast.AST) -> Optional[str]:
        """``kc.KazooClient`` -> ``kazoo.client.KazooClient`` through the module's imports.

        Only names bound by an import (and never rebound) resolve; a local class or
        variable that happens to share a name with a kazoo one does not.
        """
        # Only a name the module imports (or an attribute of one) resolves: most
        # expressions asked about (`len`, `self.zk.get`, `data.decode`) are answered here.
        base = expr
        while base.__class__ is ast.Attribute:
            base = base.value
        if base.__class__ is not ast.Name or base.id not in self.imports:
            return None
        # Every rule asks about the same calls; the answer is fixed once the module is
        # collected. Keyed by the node itself (never its id: that may be reused).
        cached = self._qualnames.get(expr, _MISSING)
        if cached is _MISSING:
            cached = self._qualnames[expr] = self._qualname(expr)
        return cached

    def _qualname(self, expr: ast.AST) -> Optional[str]:
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        base = self.imports.get(expr.id)
        if base is None:
            return None
        bindings = self.module_scope.bindings.get(expr.id, ())
        # An optional dependency (`except ImportError: KazooClient = None`) still names the
        # import wherever it is called: called, None would have raised.
        if any(value is not _IMPORT and not _is_none(value) for value in bindings):
            return None
        parts.append(base)
        qualified = ".".join(reversed(parts))
        if qualified.startswith("kazoo.client."):
            name = qualified[len("kazoo.client."):]
            if name.split(".")[0] in _CLIENT_REEXPORTS:
                return f"{_CLIENT_REEXPORTS[name.split('.')[0]]}.{name}"
        if self.facts.aliases:
            return self.facts.canonical(qualified)
        return qualified

    def local_qualname(self, node: ast.AST) -> Optional[str]:
        """The project-wide name of a def or class of this module: ``pkg.mod.func``,
        ``pkg.mod.Class``, ``pkg.mod.Class.method`` (None for nested ones, or outside a project)."""
        if self._local_quals is None:
            quals: Dict[int, str] = {}
            module = self.facts.module
            if module is not None:
                for stmt in self.tree.body:
                    if isinstance(stmt, _DEF_TYPES + (ast.ClassDef,)):
                        quals[id(stmt)] = f"{module}.{stmt.name}"
                    if isinstance(stmt, ast.ClassDef):
                        for member in stmt.body:
                            if isinstance(member, _DEF_TYPES):
                                quals[id(member)] = f"{module}.{stmt.name}.{member.name}"
            self._local_quals = quals
        return self._local_quals.get(id(node))

    def callee(self, func: ast.AST, scope: Scope) -> Optional[str]:
        """The project-wide name of what a call invokes: a def or class of this module
        (``self.method`` too), or a name imported from another module."""
        if func.__class__ is ast.Name:  # (one lookup for both a def and a class)
            if func.id not in self.imports and func.id not in self._def_names:
                return None  # `len()`, a local variable: neither imported nor a def or class here
            owner = self.lookup(func.id, scope)
            values = owner.bindings.get(func.id, ()) if owner is not None else ()
            if len(values) == 1 and isinstance(values[0], _DEFS_AND_CLASSES):
                return self.local_qualname(values[0])
            return self.qualname(func)
        if func.__class__ is ast.Attribute:
            value = func.value
            if value.__class__ is not ast.Name:
                return self.qualname(func)  # `a.b.c()`: only through an import (`self.zk.get()`: nothing)
            cls = self.class_for_self(value.id, scope)
            if cls is None:
                # `data.decode()`, `zk.get()`: a method of a value, nothing the project names
                return self.qualname(func) if value.id in self.imports else None
            values = cls.bindings.get(func.attr, ())
            if len(values) == 1 and isinstance(values[0], _DEF_TYPES):
                return self.local_qualname(values[0])  # self.method() of the class
            if func.attr in cls.bindings:
                return None
            # self.method() defined in a base class: Base.method for the project to resolve
            for base in cls.node.bases:  # type: ignore[attr-defined]
                base_qual = self.qualname(base) or self._local_class_qual(base)
                if base_qual is not None:
                    return f"{base_qual}.{func.attr}"
            return None
        return self.qualname(func)

    def _local_class_qual(self, expr: ast.AST) -> Optional[str]:
        if isinstance(expr, ast.Name) and self.classes.get(expr.id) is not None:
            if self.lookup(expr.id, self.module_scope) is self.module_scope:
                return self.local_qualname(self.classes[expr.id])
        return None

    def project_factory(self, call: ast.Call, scope: Scope) -> Optional[bool]:
        """None unless `call` calls a project factory; else whether that factory starts
        the client before handing it back."""
        if not self.facts.factories:
            return None  # (no factory known: no callee to name)
        qual = self.callee(call.func, scope)
        if qual is None:
            return None
        return self.facts.factories.get(qual)

    def call_effect(self, call: ast.Call, arg: ast.AST, scope: Scope) -> Optional[str]:
        """What the callee does with the client `arg` it is given (USES/OWNS), when the
        project shows it; None when it cannot tell."""
        if not self.facts.param_effects:
            return None
        qual = self.callee(call.func, scope)
        if qual is None:
            return None
        param = self.facts_parameter(qual, call, arg)
        if param is None:
            return None
        return self.facts.param_effects.get((qual, param))

    def facts_parameter(self, qual: str, call: ast.Call, arg: ast.AST) -> Optional[str]:
        """The parameter of project function `qual` that `arg` of `call` binds."""
        for kw in call.keywords:
            if kw.value is arg:
                return kw.arg  # None for **kwargs
        if any(isinstance(a, ast.Starred) for a in call.args):
            return None
        for index, value in enumerate(call.args):
            if value is arg:
                return f"#{index}"  # positional: the project maps it to the parameter
        return None

    def local_name_for(self, qualified: str) -> Optional[str]:
        """The expression text this module uses for `qualified`, if it imports it.

        ``from kazoo.client import KazooState as KS`` gives ``KS``; ``import kazoo.client
        as kc`` gives ``kc.KazooState`` (kazoo.client re-exports it).
        """
        module, _, attr = qualified.rpartition(".")
        for local in self.imports:
            if self.qualname(ast.Name(id=local)) == qualified:
                return local
        for local in self.imports:
            if self.qualname(ast.Name(id=local)) == module:
                return f"{local}.{attr}"
        if any((target or "").startswith(module + ".") for target in self.imports.values()):
            return None  # the file imports from the defining module: extend that import instead
        for local in self.imports:
            if self.qualname(ast.Attribute(value=ast.Name(id=local), attr=attr)) == qualified:
                return f"{local}.{attr}"
        return None

    # ---- scopes -----------------------------------------------------------------

    def scope_of(self, node: ast.AST) -> Optional[Scope]:
        """The scope a function, class or module node opens."""
        return self.scopes.get(node)

    def parents(self) -> Dict[ast.AST, ast.AST]:
        """node -> its parent node, for the whole module; built once, shared: read only.

        Operator and context nodes (``Load``, ``Add``, ``Eq``...) are shared between
        parents by the parser and have no entry.
        """
        return self._parents

    def _index_bodies(self) -> Dict[ast.AST, ast.AST]:
        """One pass over the module: every body's own nodes (`own_nodes`) and the parent map.

        Rules scan function bodies and climb to parents all the time; every node is read
        once, each body listed when its owner is reached.
        """
        parents: Dict[ast.AST, ast.AST] = {}
        bodies: List[ast.AST] = [self.tree]
        while bodies:
            owner = bodies.pop()
            _OWN_NODES[owner] = _body_nodes(owner, parents, bodies)
        return parents

    def lookup(self, name: str, scope: Scope) -> Optional[Scope]:
        """The scope whose binding of `name` a read in `scope` sees (Python's LEGB, minus builtins)."""
        current: Optional[Scope] = scope
        first = True
        while current is not None:
            if name in current.global_names:
                return self.module_scope if name in self.module_scope.bindings else None
            if current.kind != "class" or first:
                if name in current.bindings and name not in current.nonlocal_names:
                    return current
            first = False
            current = current.parent
        return None

    # ---- clients ------------------------------------------------------------------

    @property
    def client_classes(self) -> set:
        """Qualified or local names of classes whose instances are KazooClients."""
        if self._client_classes is None:
            found = {KAZOO_CLIENT}
            changed = True
            while changed:
                changed = False
                for name, cls in self.classes.items():
                    if cls is None or name in found:
                        continue
                    for base in cls.bases:
                        if self.qualname(base) in found or self.qualname(base) in self.facts.client_classes or (
                            isinstance(base, ast.Name) and base.id in found and base.id in self.classes
                        ):
                            found.add(name)
                            changed = True
                            break
            self._client_classes = found
        return self._client_classes

    def is_client_class(self, expr: ast.AST) -> bool:
        qualified = self.qualname(expr)
        if qualified in self.client_classes or qualified in self.facts.client_classes:
            return True
        return (
            isinstance(expr, ast.Name)
            and expr.id in self.client_classes
            and self.classes.get(expr.id) is not None
            and self.lookup(expr.id, self.module_scope) is self.module_scope
        )

    def is_client_construction(self, expr: ast.AST) -> bool:
        return isinstance(expr, ast.Call) and self.is_client_class(expr.func)

    def is_client_annotation(self, annotation: Optional[ast.AST]) -> bool:
        if annotation is None:
            return False
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                annotation = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                return False
        if isinstance(annotation, ast.Subscript):  # Optional[KazooClient]
            if (self.qualname(annotation.value) or "").endswith("Optional"):
                return self.is_client_annotation(annotation.slice)
            return False
        if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):  # KazooClient | None
            sides = [annotation.left, annotation.right]
            others = [s for s in sides if not (isinstance(s, ast.Constant) and s.value is None)]
            return len(others) == 1 and self.is_client_annotation(others[0])
        return self.is_client_class(annotation)

    def is_client_expr(self, expr: ast.AST, scope: Scope) -> bool:
        """Does `expr`, evaluated in `scope`, always produce a KazooClient?"""
        # Aliases chain (c2 = c1; c3 = c2 ...): each link costs a few frames of recursion.
        if self._depth > _MAX_DEPTH:
            return False
        self._depth += 1
        try:
            return self._is_client_expr(expr, scope)
        finally:
            self._depth -= 1

    def _is_client_expr(self, expr: ast.AST, scope: Scope) -> bool:
        if self.is_client_construction(expr):
            return True
        if isinstance(expr, ast.Call):
            factory = self._called_function(expr.func, scope)
            if factory is not None and self.is_client_factory(factory):
                return True
            return self.project_factory(expr, scope) is not None
        own = _own_client_branch(expr)
        if own is not None:
            # Bring your own client: `zk if zk is not None else KazooClient(...)` (or
            # `zk or KazooClient(...)`): the caller's client or one built here.
            built, given = own
            return self.is_client_expr(built, scope) and self._given_client(given, scope)
        return self.client_key(expr, scope) is not None

    def _given_client(self, expr: ast.AST, scope: Scope) -> bool:
        """The other branch of a bring-your-own-client choice: a parameter (or a client)."""
        if isinstance(expr, ast.Name):
            owner = self.lookup(expr.id, scope)
            if owner is not None and expr.id in owner.params and len(owner.bindings.get(expr.id, ())) == 1:
                return True
        return self.client_key(expr, scope) is not None

    def _called_function(self, func: ast.AST, scope: Scope) -> Optional[ast.AST]:
        """The def a call invokes: a function of this module, or ``self.method`` of the class."""
        if isinstance(func, ast.Name):
            owner = self.lookup(func.id, scope)
            values = owner.bindings.get(func.id, ()) if owner is not None else ()
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            cls = self.class_for_self(func.value.id, scope)
            values = cls.bindings.get(func.attr, ()) if cls is not None else ()
        else:
            return None
        if len(values) == 1 and isinstance(values[0], _DEF_TYPES):
            return values[0]
        return None

    def is_client_factory(self, func: ast.AST) -> bool:
        """A function or method annotated ``-> KazooClient``, or every ``return`` of which
        returns a client (``def _make_client(self): return KazooClient(...)``)."""
        key = id(func)
        cached = self._factories.get(key, _MISSING)
        if cached is not _MISSING:
            return bool(cached)  # None: being computed further up (a cycle) answers "no"
        self._factories[key] = None  # in progress: recursion answers "no"
        scope = self.scopes.get(func)
        if self.is_client_annotation(func.returns):
            result = True
        elif scope is None or isinstance(func, ast.AsyncFunctionDef) or any(
            isinstance(node, (ast.Yield, ast.YieldFrom)) for node in own_nodes(func)
        ):
            result = False  # generators and coroutines hand back something else
        else:
            returns = [r.value for r in _own_returns(func)]
            result = bool(returns) and all(r is not None and self.is_client_expr(r, scope) for r in returns)
            result = result and not _escapes_before_return(func, returns)
        self._factories[key] = result
        return result

    def client_key(self, expr: ast.AST, scope: Scope) -> Optional[ClientKey]:
        """The client variable `expr` reads, when the model can prove it is one."""
        if isinstance(expr, ast.Name):
            owner = self.lookup(expr.id, scope)
            if owner is not None and self._name_is_client(owner, expr.id):
                return ClientKey("name", id(owner.node), expr.id, owner)
            return None
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            cls = self.class_for_self(expr.value.id, scope)
            if cls is not None and self._attr_is_client(cls, expr.attr):
                return ClientKey("attr", id(cls.node), expr.attr, cls)
        return None

    def read_key(self, expr: ast.AST, scope: Scope) -> Optional["ClientKey"]:
        """`client_key` for rules, asked once per name (or ``<name>.<attr>``) per scope.

        Within one scope a name always reads the same variable, and a rule asks only once
        the model is built, when every answer is final. (The model's own questions asked
        while it is still working one out, e.g. through a cycle of aliases, may get a
        provisional "no": it calls `client_key` directly.)
        """
        cls = expr.__class__
        if cls is ast.Name:
            memo: tuple = (scope, expr.id)
        elif cls is ast.Attribute and expr.value.__class__ is ast.Name:
            memo = (scope, expr.value.id, expr.attr)
        else:
            return self.client_key(expr, scope)
        key = self._read_keys.get(memo, _MISSING)
        if key is _MISSING:
            key = self._read_keys[memo] = self.client_key(expr, scope)
        return key

    def client_reads(self) -> List[Tuple[ast.expr, Scope, "ClientKey"]]:
        """(expression, scope, key) for every read of a client variable, in collection order.

        Computed once from the collector's `reads` and shared by the rules that follow
        clients through the module (uses, escapes, hand-offs).
        """
        if self._client_reads is None:
            found: List[Tuple[ast.expr, Scope, ClientKey]] = []
            append, chains, read_key = found.append, self._attribute_chains, self.read_key
            Name, Attribute, Load = ast.Name, ast.Attribute, ast.Load
            client_names, client_attrs = self._client_variable_names()
            # client_key answers for <name>.<attr> only where <name> is a method's self
            params = set().union(*(scope.params for scope in self.scopes.values()))
            for node, scope in self.reads:
                if node.__class__ is Name:
                    if node.ctx.__class__ is not Load or node.id not in client_names:
                        continue
                else:
                    value = node.value
                    if value.__class__ is Attribute:
                        chains.add((value.attr, node.attr))
                    if node.ctx.__class__ is not Load or value.__class__ is not Name or value.id not in params:
                        continue
                    if node.attr not in client_attrs:
                        continue
                key = read_key(node, scope)
                if key is not None:
                    append((node, scope, key))
            self._client_reads = found
        return self._client_reads

    def _client_variable_names(self) -> Tuple[set, set]:
        """The names and the ``self`` attributes some variable of the module holds a client
        in: a name some scope binding it binds a client, an attribute that is a client
        attribute of some class. A read of any other cannot be a client, whatever scope it
        is in: asked once per variable, not once per scope reading it.

        Passed over without asking: a parameter neither annotated nor inferred a client,
        a name bound only to what cannot be a client (`_may_be_client`: a constant, a
        loop variable, a def...) nor to an import the facts say is a client; an attribute
        neither declared in a class body nor given a value that may be a client (nor one
        the facts name)."""
        clients: set = set()
        inferred = bool(self.facts.client_params)
        imported_clients = bool(self.facts.module_clients)
        for scope in self.scopes.values():
            params = scope.params
            for name, values in scope.bindings.items():
                if name in clients:
                    continue
                param = params.get(name)
                if param is not None:
                    if param.annotation is None and len(values) == 1 and not inferred:
                        continue
                elif not any(map(_may_be_client, values)) and not (imported_clients and _IMPORT in values):
                    continue
                if self._name_is_client(scope, name):
                    clients.add(name)
        attrs: set = set()
        for stores in self.attribute_stores.values():
            attrs.update(target.attr for target, value in stores if _may_be_client(value))
        for known in self.facts.client_attrs.values():
            attrs.update(known)
        client_attrs: set = set()
        for scope in self.scopes.values():
            if scope.kind != "class":
                continue
            for name, values in scope.bindings.items():
                if any(_may_be_client(v) or isinstance(v, _Annotation) for v in values):
                    attrs.add(name)
        for scope in self.scopes.values():
            if scope.kind != "class":
                continue
            # `_attr_is_client` answers "no" for an attribute the class neither declares
            # nor assigns to on self, unless the facts name it (set by a base class)
            candidates = set(scope.bindings).union(self._self_assignments(scope))
            qual = self.local_qualname(scope.node)
            if qual is not None:
                candidates.update(self.facts.client_attrs.get(qual, ()))
            for attr in candidates:
                if attr in attrs and attr not in client_attrs and self._attr_is_client(scope, attr):
                    client_attrs.add(attr)
        return clients, client_attrs

    @property
    def attribute_chains(self) -> set:
        """(attr, method) for every ``<anything>.<attr>.<method>`` in the module.

        E.g. ("zk", "stop") for ``service.zk.stop()``: how other code reaches a class's client.
        """
        self.client_reads()
        return self._attribute_chains

    def class_for_self(self, name: str, scope: Scope) -> Optional[Scope]:
        """The class whose instance `name` is, when `name` is a method's self/cls.

        Nested functions and lambdas inside a method see the method's ``self``
        unless they bind the name themselves.
        """
        if name not in self._self_names:
            return None
        current: Optional[Scope] = scope
        while current is not None and current.kind == "function":
            if current.self_name == name:
                return current.enclosing_class
            if name in current.bindings:
                return None
            current = current.parent
        return None

    def _name_is_client(self, owner: Scope, name: str) -> bool:
        key = (id(owner.node), name)
        cached = self._client_names.get(key, _MISSING)
        if cached is not _MISSING:
            return bool(cached)  # None: being computed further up (a cycle) answers "no"
        self._client_names[key] = None
        param = owner.params.get(name)
        bindings = owner.bindings.get(name, ())
        if param is not None and len(bindings) == 1:
            result = self.is_client_annotation(param.annotation) or self._inferred_client_param(owner, name)
        elif bindings and all(value is _IMPORT for value in bindings) and self.facts.module_clients:
            result = self.qualname(ast.Name(id=name)) in self.facts.module_clients  # another module's client
        else:
            result = self._all_clients(owner.bindings.get(name, ()), owner)
        self._client_names[key] = result
        return result

    def imported_client_started(self, key: "ClientKey") -> bool:
        """A client imported from another module of the project that starts it at import."""
        if key.kind != "name" or key.scope is not self.module_scope:
            return False
        return bool(self.facts.module_clients.get(self.qualname(ast.Name(id=key.name)) or ""))

    def _inferred_client_param(self, owner: Scope, name: str) -> bool:
        """Every call site in the project passes a client for this parameter."""
        if not self.facts.client_params:
            return False
        qual = self.local_qualname(owner.node)
        return qual is not None and (qual, name) in self.facts.client_params

    def _attr_is_client(self, cls: Scope, attr: str) -> bool:
        key = (id(cls.node), attr)
        cached = self._client_attrs.get(key, _MISSING)
        if cached is not _MISSING:
            return bool(cached)  # None: being computed further up (a cycle) answers "no"
        self._client_attrs[key] = None
        values: List[Tuple[Optional[ast.AST], Scope]] = []
        annotated = False
        for value in cls.bindings.get(attr, ()):
            if isinstance(value, _Annotation):
                annotated = annotated or self.is_client_annotation(value.annotation)
            else:
                values.append((value, cls))
        values.extend(self._self_assignments(cls).get(attr, ()))
        result = (annotated and not values) or self._all_clients_in(values) or self._brought_or_built(values)
        if not values and not annotated and self.facts.client_attrs:
            # set by a base class, maybe in another module
            qual = self.local_qualname(cls.node)
            result = qual is not None and attr in self.facts.client_attrs.get(qual, ())
        self._client_attrs[key] = result
        return result

    def _self_assignments(self, cls: Scope) -> Dict[str, List[Tuple[Optional[ast.AST], Scope]]]:
        """attr -> every (value, method scope) of ``self.attr = value`` in the class's methods.

        Built once per class from the collector's attribute stores, in method order.
        """
        index = self._self_assignment_index.get(id(cls.node))
        if index is None:
            index = {}
            for method_scope in self._methods(cls):
                self_name = method_scope.self_name
                if not self_name:
                    continue
                for target, value in self.attribute_stores.get(method_scope, ()):
                    if target.value.id == self_name:
                        index.setdefault(target.attr, []).append((value, method_scope))
            self._self_assignment_index[id(cls.node)] = index
        return index

    def _methods(self, cls: Scope) -> Iterator[Scope]:
        for stmt in cls.node.body:
            if isinstance(stmt, _DEF_TYPES):
                method_scope = self.scopes.get(stmt)
                if method_scope is not None:
                    yield method_scope

    def _all_clients(self, values, scope: Scope) -> bool:
        return self._all_clients_in([(v, scope) for v in values])

    def _all_clients_in(self, values: List[Tuple[Optional[ast.AST], Scope]]) -> bool:
        """True when every value is a client or a ``None`` placeholder, and one is a client."""
        seen_client = False
        for value, scope in values:
            if isinstance(value, _Annotation):
                continue
            if isinstance(value, ast.Constant) and value.value is None:
                continue
            # UNKNOWN, imports and def/class nodes are not client expressions
            if not isinstance(value, ast.expr) or not self.is_client_expr(value, scope):
                return False
            seen_client = True
        return seen_client

    def _brought_or_built(self, values: List[Tuple[Optional[ast.AST], Scope]]) -> bool:
        """Bring your own client, written as statements: ``self.zk = zk`` in one branch (a
        parameter) and ``self.zk = KazooClient(...)`` in another. A client either way."""
        built = given = False
        for value, scope in values:
            if isinstance(value, ast.Constant) and value.value is None:
                continue
            if _is_parameter(value, scope):
                given = True
            elif isinstance(value, ast.expr) and self.is_client_expr(value, scope):
                built = True
            else:
                return False
        return built and given

    def client_calls(self) -> List[Tuple[CallSite, ClientKey, str]]:
        """Every ``<client>.<method>(...)`` call: (site, client, method name)."""
        if self._client_calls is None:
            found = []
            # The receiver is a read the collector recorded in the call's scope.
            read_keys = {id(node): key for node, _, key in self.client_reads()}
            for site in self.calls:
                func = site.node.func
                if func.__class__ is ast.Attribute:
                    key = read_keys.get(id(func.value))
                    if key is None and self.is_client_construction(func.value):
                        key = ClientKey("expr", id(func.value), "", site.scope)
                    if key is not None:
                        found.append((site, key, func.attr))
            self._client_calls = found
        return self._client_calls

    # ---- callbacks -------------------------------------------------------------------

    def resolve_function(self, expr: ast.AST, scope: Scope) -> Optional[FunctionNode]:
        """The function a callback argument names: a lambda, a def, a method, or a partial."""
        if isinstance(expr, ast.Lambda):
            return expr
        if isinstance(expr, ast.Name):
            owner = self.lookup(expr.id, scope)
            if owner is None:
                return None
            values = owner.bindings.get(expr.id, ())
            if len(values) == 1 and isinstance(values[0], _FUNCTION_TYPES):
                return values[0]
            return None
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            cls = self.class_for_self(expr.value.id, scope)
            if cls is not None:
                values = cls.bindings.get(expr.attr, ())
                if len(values) == 1 and isinstance(values[0], _DEF_TYPES):
                    return values[0]
            return None
        if isinstance(expr, ast.Call) and self.qualname(expr.func) == "functools.partial" and expr.args:
            return self.resolve_function(expr.args[0], scope)
        return None

    def callbacks(self) -> List[Callback]:
        """Every function kazoo will call back, with the kind of thread that runs it."""
        if self._callbacks is None:
            self._callbacks = list(self._find_callbacks())
        return self._callbacks

    def callbacks_of(self, kind: CallbackKind) -> List[Callback]:
        return [cb for cb in self.callbacks() if cb.kind is kind]

    def _find_callbacks(self) -> Iterator[Callback]:
        seen = set()

        def make(kind, expr, scope, client, registration):
            func = self.resolve_function(expr, scope)
            if func is not None and (kind, id(func)) not in seen:
                seen.add((kind, id(func)))
                return Callback(kind, func, client, registration)
            return None

        for site, client, method in self.client_calls():
            call = site.node
            candidates = []
            if method == "add_listener" and call.args:
                candidates.append((CallbackKind.STATE_LISTENER, call.args[0]))
            elif method in _WATCH_METHODS:
                watch = _argument(call, _WATCH_METHODS[method], "watch")
                if watch is not None:
                    candidates.append((CallbackKind.WATCH, watch))
            elif method in ("DataWatch", "ChildrenWatch"):
                kind = CallbackKind.DATA_WATCH if method == "DataWatch" else CallbackKind.CHILDREN_WATCH
                func = _argument(call, 1, "func")
                if func is not None:
                    candidates.append((kind, func))
            for kind, expr in candidates:
                cb = make(kind, expr, site.scope, client, call)
                if cb is not None:
                    yield cb
        # the calls of a watcher recipe, of rawlink() or of listen(), in `calls` order
        for site in CallIndex.of(self).calls(names=("rawlink", "listen"), qualified=_RECIPE_WATCHERS):
            call = site.node
            qual = self.qualname(call.func)
            if qual in _RECIPE_WATCHERS and call.args:
                client = self.client_key(call.args[0], site.scope)
                func = _argument(call, 2, "func")
                if func is not None and self.is_client_expr(call.args[0], site.scope):
                    cb = make(_RECIPE_WATCHERS[qual], func, site.scope, client, call)
                    if cb is not None:
                        yield cb
            elif isinstance(call.func, ast.Attribute) and call.func.attr == "rawlink" and call.args:
                if self._is_async_result(call.func.value, site.scope):
                    client = self._async_result_client(call.func.value, site.scope)
                    cb = make(CallbackKind.COMPLETION, call.args[0], site.scope, client, call)
                    if cb is not None:
                        yield cb
            elif isinstance(call.func, ast.Attribute) and call.func.attr == "listen" and call.args:
                # TreeCache(client, path).listen(func), or a name bound only to such a cache
                cache = self._tree_cache_client(call.func.value, site.scope)
                if cache is not None:
                    cb = make(CallbackKind.TREE_CACHE, call.args[0], site.scope, cache, call)
                    if cb is not None:
                        yield cb
        # Decorator form: @zk.DataWatch(path) / @zk.ChildrenWatch(path), and @zk.add_listener
        for node, scope in self.scopes.items():
            if not isinstance(node, _DEF_TYPES) or scope.parent is None:
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Attribute) and deco.attr == "add_listener":
                    client = self.client_key(deco.value, scope.parent)
                    if client is not None and (CallbackKind.STATE_LISTENER, id(node)) not in seen:
                        seen.add((CallbackKind.STATE_LISTENER, id(node)))
                        yield Callback(CallbackKind.STATE_LISTENER, node, client, deco)
                    continue
                if not isinstance(deco, ast.Call):
                    continue
                qual = self.qualname(deco.func)
                if qual in _RECIPE_WATCHERS and deco.args and _argument(deco, 2, "func") is None:
                    # @DataWatch(client, path) / @ChildrenWatch(client, path)
                    client = self.client_key(deco.args[0], scope.parent)
                    kind = _RECIPE_WATCHERS[qual]
                elif isinstance(deco.func, ast.Attribute) and deco.func.attr in ("DataWatch", "ChildrenWatch"):
                    client = self.client_key(deco.func.value, scope.parent)
                    kind = CallbackKind.DATA_WATCH if deco.func.attr == "DataWatch" else CallbackKind.CHILDREN_WATCH
                else:
                    continue
                if client is None:
                    continue
                if (kind, id(node)) not in seen:
                    seen.add((kind, id(node)))
                    yield Callback(kind, node, client, deco)

    def _async_result_client(self, expr: ast.AST, scope: Scope) -> Optional[ClientKey]:
        """The client of ``zk.get_async(...)`` (or of a name bound only to such calls on one client)."""
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
            return self.client_key(expr.func.value, scope)
        if isinstance(expr, ast.Name):
            owner = self.lookup(expr.id, scope)
            if owner is None:
                return None
            keys = {
                self._async_result_client(v, owner) if isinstance(v, ast.expr) else None
                for v in owner.bindings.get(expr.id, ())
            }
            if len(keys) == 1:
                return keys.pop()
        return None

    def _tree_cache_client(self, expr: ast.AST, scope: Scope) -> Optional[ClientKey]:
        """The client of a ``TreeCache(client, path)`` that `expr` always is."""
        constructions = self.constructions(expr, scope)
        if not constructions:
            return None
        keys = set()
        for call, call_scope in constructions:
            if self.qualname(call.func) != "kazoo.recipe.cache.TreeCache" or not call.args:
                return None
            keys.add(self.client_key(call.args[0], call_scope))
        if len(keys) == 1:
            return keys.pop()
        return None

    def constructions(
        self, expr: ast.AST, scope: Scope, own_only: bool = False
    ) -> Optional[List[Tuple[ast.Call, Scope]]]:
        """The calls whose result `expr` always holds: the call itself, or every value bound to
        a name or ``self.<attr>`` (``None`` placeholders skipped). None if any value is not a call.

        `own_only`: the calls whose result the holder owns, passing over a parameter it was
        handed (``self.zk = zk`` beside ``self.zk = KazooClient(...)``).
        """
        if isinstance(expr, ast.Call):
            return [(expr, scope)]
        values = self.bound_values(expr, scope)
        if values is None:
            return None
        found = []
        for value, value_scope in values:
            if isinstance(value, ast.Constant) and value.value is None:
                continue
            if own_only and _is_parameter(value, value_scope):
                continue
            own = _own_client_branch(value)
            if own is not None:
                value = own[0]  # bring your own client: the holder owns the one it builds
            if not isinstance(value, ast.Call):
                return None
            found.append((value, value_scope))
        return found or None

    def _is_async_result(self, expr: ast.AST, scope: Scope) -> bool:
        """``zk.get_async(...)`` or a name bound only to such calls."""
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
            return expr.func.attr.endswith("_async") and self.client_key(expr.func.value, scope) is not None
        if isinstance(expr, ast.Name):
            owner = self.lookup(expr.id, scope)
            if owner is None:
                return False
            values = owner.bindings.get(expr.id, ())
            return bool(values) and all(
                isinstance(v, ast.expr) and self._is_async_result(v, owner) for v in values
            )
        return False

    def function_scope(self, func: FunctionNode) -> Optional[Scope]:
        return self.scopes.get(func)

    # ---- state listeners ---------------------------------------------------------------

    def state_listeners(self, key: ClientKey) -> List[Tuple[ast.expr, Optional[FunctionNode]]]:
        """Every ``add_listener`` on client `key`: (registration, listener), listener None when
        unresolved. The registration is the call, or the decorator of ``@client.add_listener``.

        A ``functools.partial`` listener counts as unresolved: its parameters are shifted; so
        does a decorated def with other decorators below ``@client.add_listener`` (kazoo gets
        what they return, not the def).
        """
        found: List[Tuple[ast.expr, Optional[FunctionNode]]] = []
        for site, client, method in self.client_calls():
            if method == "add_listener" and client == key and site.node.args:
                arg = site.node.args[0]
                func = None if isinstance(arg, ast.Call) else self.resolve_function(arg, site.scope)
                found.append((site.node, func))
        for node, scope in self.scopes.items():
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or scope.parent is None:
                continue
            for index, deco in enumerate(node.decorator_list):
                if (
                    isinstance(deco, ast.Attribute) and deco.attr == "add_listener"
                    and self.client_key(deco.value, scope.parent) == key
                ):
                    innermost = index == len(node.decorator_list) - 1
                    found.append((deco, node if innermost else None))
        return found

    def listener_reaction(self, func: Optional[FunctionNode]) -> "ListenerReaction":
        """Which KazooState values a state listener reacts to (unresolved: all of them)."""
        if func is None:
            return ListenerReaction(opaque=True)
        return _ListenerAnalysis(self, func).run()

    def bound_values(self, expr: ast.AST, scope: Scope) -> Optional[List[Tuple[ast.expr, Scope]]]:
        """Every value a name or ``self.<attr>`` is bound to, with its scope; None if any is unknown."""
        values: List[Tuple[Optional[ast.AST], Scope]] = []
        if isinstance(expr, ast.Name):
            owner = self.lookup(expr.id, scope)
            if owner is None or expr.id in owner.params:
                return None
            values = [(v, owner) for v in owner.bindings.get(expr.id, ())]
        elif isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            cls = self.class_for_self(expr.value.id, scope)
            if cls is None:
                return None
            values = [(v, cls) for v in cls.bindings.get(expr.attr, ()) if not isinstance(v, _Annotation)]
            values.extend(self._self_assignments(cls).get(expr.attr, ()))
        if not values or any(not isinstance(v, ast.expr) for v, _ in values):
            return None
        return values  # type: ignore[return-value]


# ---- state listener analysis -------------------------------------------------------------

KAZOO_STATES = frozenset({"CONNECTED", "SUSPENDED", "LOST"})
_LOG_CALLS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log", "print"}


@dataclass(frozen=True)
class ListenerReaction:
    """What a state listener does per state.

    branches: it compares its state argument with KazooState values.
    handled:  states that have a branch of their own (``!=``/``not in`` name the others).
    default:  it has a branch for the states it does not name (``else``, code after an early return).
    opaque:   the state goes where the model cannot follow (stored, passed on, dispatched):
              assume it reacts to every state.
    acts:     it does something besides logging (what matters for a listener that does not branch).
    """

    branches: bool = False
    handled: frozenset = frozenset()
    default: bool = False
    opaque: bool = False
    acts: bool = True

    def reacts_to(self, state: str) -> bool:
        if self.opaque:
            return True
        if not self.branches:
            return self.acts
        return state in self.handled or self.default


class CallIndex:
    """Positions in `model.calls` by callee name and by qualified callee.

    Most questions about calls are about a few known names: methods (``add_listener``,
    ``commit``, ``acquire``...) or qualified functions and classes (``os.fork``,
    ``KazooRetry``...). One pass over the module's calls per model (kept in a ``_zk*``
    attribute: dropped with the model or its facts) hands each asker the few calls it
    wants, in `model.calls` order.
    """

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


class _ListenerAnalysis:
    def __init__(self, model: "ModuleModel", func: FunctionNode) -> None:
        self.model = model
        self.func = func

    def state_constant(self, expr: ast.AST) -> Optional[frozenset]:
        if isinstance(expr, ast.Constant) and expr.value in KAZOO_STATES:
            return frozenset({expr.value})
        qual = self.model.qualname(expr)
        owner, _, member = (qual or "").rpartition(".")
        if owner in (KAZOO_STATE, "kazoo.client.KazooState") and member in KAZOO_STATES:
            return frozenset({member})  # kazoo.client re-exports KazooState
        if isinstance(expr, (ast.Tuple, ast.List, ast.Set)) and expr.elts:
            found: frozenset = frozenset()
            for elt in expr.elts:
                one = self.state_constant(elt)
                if one is None or len(one) != 1:
                    return None
                found |= one
            return found
        return None

    def run(self) -> ListenerReaction:
        func = self.func
        scope = self.model.scopes.get(func)
        params = func.args.posonlyargs + func.args.args
        skip = 1 if scope is not None and scope.self_name is not None else 0
        own = own_node_list(func)
        acts = self._any_acts(own)
        if len(params) <= skip:
            return ListenerReaction(opaque=func.args.vararg is not None, acts=acts)
        name = params[skip].arg
        if scope is None or len(scope.bindings.get(name, ())) != 1:
            return ListenerReaction(opaque=True)
        allowed = set()
        handled: set = set()
        state_tests = set()
        opaque = False
        default = False
        Compare, Call, Name = ast.Compare, ast.Call, ast.Name
        for node in own:
            cls = node.__class__
            if cls is Compare:
                sides = [node.left] + node.comparators
                mine = [s for s in sides if s.__class__ is Name and s.id == name]
                if not mine:
                    continue
                if len(node.ops) != 1:
                    opaque = True
                    continue
                other = node.comparators[0] if mine[0] is node.left else node.left
                states = self.state_constant(other)
                if states is None:
                    opaque = True
                    continue
                allowed.update(id(s) for s in mine)
                state_tests.add(id(node))
                op = node.ops[0]
                if isinstance(op, (ast.Eq, ast.Is, ast.In)):
                    handled |= states
                elif isinstance(op, (ast.NotEq, ast.IsNot, ast.NotIn)):
                    handled |= KAZOO_STATES - states
                else:
                    opaque = True
            elif cls is Call and self._is_log_call(node):
                for arg in list(node.args) + [k.value for k in node.keywords]:
                    allowed.update(id(n) for n in walk(arg) if n.__class__ is Name)
            elif cls is _MATCH and node.subject.__class__ is Name and node.subject.id == name:
                allowed.add(id(node.subject))
                state_tests.add(id(node))
                for case in node.cases:
                    states = self._pattern_states(case.pattern)
                    if states is None:
                        opaque = True
                    elif states == "default":
                        default = True
                    else:
                        handled |= states
        if opaque or _reads_elsewhere(func, name, allowed):
            return ListenerReaction(opaque=True, acts=acts)
        branches = bool(state_tests)
        if state_tests:  # (without a test of the state, no branch below can be one on it)
            default = default or _other_states_branch(func, own, state_tests)
        return ListenerReaction(branches, frozenset(handled), default, False, acts)

    def _pattern_states(self, pattern):
        kind = type(pattern).__name__
        if kind == "MatchAs" and pattern.pattern is None:
            return "default"
        if kind == "MatchValue":
            return self.state_constant(pattern.value)
        if kind == "MatchOr":
            found: frozenset = frozenset()
            for sub in pattern.patterns:
                one = self._pattern_states(sub)
                if one is None or one == "default":
                    return one
                found |= one
            return found
        return None

    @staticmethod
    def _is_log_call(node: ast.Call) -> bool:
        func = node.func
        if isinstance(func, ast.Name):
            return func.id == "print"
        return isinstance(func, ast.Attribute) and func.attr in _LOG_CALLS

    def _any_acts(self, own: List[ast.AST]) -> bool:
        """Does the body do anything but log: a call other than a log call, a return of a
        value, an assignment, a raise, a def..."""
        Call, Return, Constant = ast.Call, ast.Return, ast.Constant
        for node in own:
            cls = node.__class__
            if cls in _ACTING_NODES:
                return True
            if cls is Call:
                if not self._is_log_call(node):
                    return True
            elif cls is Return:
                value = node.value
                if value is not None and not (value.__class__ is Constant and value.value is None):
                    return True
        return False


_ACTING_NODES = frozenset({
    ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete, ast.Raise, ast.Global, ast.Nonlocal, *_DEF_TYPES,
})
_MATCH = getattr(ast, "Match", None)  # Python >= 3.10


def _reads_elsewhere(func: FunctionNode, name: str, allowed: set) -> bool:
    """Is `name` read anywhere in `func` (nested functions included) but at the nodes `allowed`?"""
    todo: List[ast.AST] = [func]
    pop, extend, get = todo.pop, todo.extend, _CHILDREN.get
    Name, Constant, Load = ast.Name, ast.Constant, ast.Load
    while todo:
        node = pop()
        cls = node.__class__
        if cls is Name:
            if node.id == name and node.ctx.__class__ is Load and id(node) not in allowed:
                return True
            continue
        if cls is not Constant:
            children = get(node)
            extend(children if children is not None else _child_nodes(node))
    return False


def _other_states_branch(func: FunctionNode, own: List[ast.AST], state_tests: set) -> bool:
    """Does the listener have a branch for the states its tests do not name: an ``else``
    of a test of the state (not an ``elif`` testing it again), or the code after an early
    return on such a test?"""

    def tests_state(test: ast.AST) -> bool:
        return any(id(n) in state_tests for n in walk(test))

    If, IfExp = ast.If, ast.IfExp
    for node in [func] + own:
        cls = node.__class__
        if cls is If:
            if node.orelse and tests_state(node.test):
                orelse = node.orelse
                if not (len(orelse) == 1 and orelse[0].__class__ is If and tests_state(orelse[0].test)):
                    return True
        elif cls is IfExp:
            if node.orelse.__class__ is not ast.Constant and tests_state(node.test):
                return True
        fields = _BLOCK_FIELDS.get(cls)
        if fields is None:  # no statement lists below an expression
            fields = _BLOCK_FIELDS[cls] = () if issubclass(cls, ast.expr) else tuple(
                name for name in ("body", "orelse", "finalbody") if name in cls._fields
            )
        for field_name in fields:
            stmts = getattr(node, field_name, None)
            if not isinstance(stmts, list):
                continue
            for stmt in stmts[:-1]:
                if (
                    stmt.__class__ is If and not stmt.orelse and tests_state(stmt.test)
                    and isinstance(stmt.body[-1], (ast.Return, ast.Raise, ast.Continue, ast.Break))
                ):
                    return True  # the code after an early return is the other states' branch
    return False


# node class -> its fields that hold statement lists ("body", "orelse", "finalbody")
_BLOCK_FIELDS: Dict[type, Tuple[str, ...]] = {}


# ---- collection -------------------------------------------------------------------------

class _ImportMarker:
    """Binding value for names bound by an import."""


_IMPORT = _ImportMarker()


# The only expressions `is_client_expr` can answer "yes" for: a construction or factory
# call, an alias (a name, ``self.zk``), bring-your-own (``zk if zk else KazooClient()``,
# ``zk or KazooClient()``).
_CLIENT_VALUE_CLASSES = frozenset([ast.Call, ast.Name, ast.Attribute, ast.IfExp, ast.BoolOp])


def _may_be_client(value: Optional[ast.AST]) -> bool:
    """Could this bound value be a client (see `_CLIENT_VALUE_CLASSES`)?"""
    return value.__class__ in _CLIENT_VALUE_CLASSES


class _Annotation:
    """Binding value for a bare annotated name (``zk: KazooClient``) with no value."""

    __slots__ = ("annotation",)

    def __init__(self, annotation: ast.AST) -> None:
        self.annotation = annotation


class _Collector:
    """One walk over the tree: scopes, bindings, imports, classes and every call."""

    def __init__(self, model: ModuleModel) -> None:
        self.model = model

    def collect(self, tree: ast.Module) -> None:
        self._body(tree.body, self.model.module_scope)
        for stmt in tree.body:
            if isinstance(stmt, ast.ClassDef):
                previous = self.model.classes.get(stmt.name, 0)
                self.model.classes[stmt.name] = stmt if previous == 0 else None

    def _body(self, stmts, scope: Scope) -> None:
        for stmt in stmts:
            self._stmt(stmt, scope)

    def _stmt(self, node: ast.stmt, scope: Scope) -> None:
        visit = _STATEMENT_VISITS.get(node.__class__)
        if visit is not None:
            visit(self, node, scope)
            return
        # if/while/match/expression/return/raise/assert: visit children generically
        for child in _child_nodes(node):  # as ast.iter_child_nodes, cached for the rules' walks
            if isinstance(child, ast.stmt):
                self._stmt(child, scope)
            elif isinstance(child, ast.expr):
                self._expr(child, scope)
            elif child.__class__.__name__ == "match_case":
                self._match_case(child, scope)

    def _def(self, node, scope: Scope) -> None:
        for deco in node.decorator_list:
            self._expr(deco, scope)
        self._arguments(node.args, scope)
        if node.returns is not None:
            self._expr(node.returns, scope, [])  # annotations are not reads of variables
        scope.bind(node.name, node)
        inner = self._open(node, "function", scope)
        self._bind_params(node.args, inner)
        self._body(node.body, inner)

    def _class(self, node: ast.ClassDef, scope: Scope) -> None:
        for expr in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self._expr(expr, scope)
        scope.bind(node.name, node)
        inner = self._open(node, "class", scope)
        self._body(node.body, inner)

    def _assign(self, node: ast.Assign, scope: Scope) -> None:
        self.model.assignments.append((node, scope))
        self._expr(node.value, scope)
        for target in node.targets:
            self._target(target, node.value, scope)

    def _ann_assign(self, node: ast.AnnAssign, scope: Scope) -> None:
        if node.value is not None:
            self._expr(node.value, scope)
        self._expr(node.annotation, scope)
        if isinstance(node.target, ast.Name):
            scope.bind(node.target.id, node.value if node.value is not None else _Annotation(node.annotation))
        elif node.value is None:
            self._expr(node.target, scope)  # `self.x: T` declares, assigns nothing
        else:
            self._target(node.target, node.value, scope)

    def _aug_assign(self, node: ast.AugAssign, scope: Scope) -> None:
        self._expr(node.value, scope)
        self._target(node.target, UNKNOWN, scope)

    def _global(self, node: ast.Global, scope: Scope) -> None:
        scope.global_names.update(node.names)

    def _nonlocal(self, node: ast.Nonlocal, scope: Scope) -> None:
        scope.nonlocal_names.update(node.names)

    def _for(self, node, scope: Scope) -> None:
        self._expr(node.iter, scope)
        self._target(node.target, UNKNOWN, scope)
        self._body(node.body, scope)
        self._body(node.orelse, scope)

    def _with(self, node, scope: Scope) -> None:
        self.model.withs.append((node, scope))
        for item in node.items:
            self._expr(item.context_expr, scope)
            if item.optional_vars is not None:
                self._target(item.optional_vars, UNKNOWN, scope)
        self._body(node.body, scope)

    def _try(self, node, scope: Scope) -> None:
        self._body(node.body, scope)
        for handler in node.handlers:
            if handler.type is not None:
                self._expr(handler.type, scope)
            if handler.name:
                scope.bind(handler.name, UNKNOWN)
            self._body(handler.body, scope)
        self._body(node.orelse, scope)
        self._body(node.finalbody, scope)

    def _delete(self, node: ast.Delete, scope: Scope) -> None:
        for target in node.targets:
            self._target(target, UNKNOWN, scope)

    def _match_case(self, case, scope: Scope) -> None:
        for sub in walk(case.pattern):
            name = getattr(sub, "name", None)
            if isinstance(name, str):
                scope.bind(name, UNKNOWN)
            if isinstance(sub, _PATTERN):
                for child in _child_nodes(sub):
                    if isinstance(child, ast.expr):  # `case State.LOST:`, `case Cls():` read names
                        self._expr(child, scope)
        if case.guard is not None:
            self._expr(case.guard, scope)
        self._body(case.body, scope)

    def _open(self, node: ast.AST, kind: str, parent: Scope) -> Scope:
        scope = Scope(node, kind, parent)
        self.model.scopes[node] = scope
        return scope

    def _arguments(self, args: ast.arguments, scope: Scope) -> None:
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self._expr(default, scope)
        for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self._expr(arg.annotation, scope, [])  # annotations are not reads of variables

    def _bind_params(self, args: ast.arguments, scope: Scope) -> None:
        for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if arg is not None:
                scope.bind(arg.arg, UNKNOWN)
                scope.params[arg.arg] = arg

    def _target(self, target: ast.AST, value, scope: Scope) -> None:
        if isinstance(target, ast.Name):
            scope.bind(target.id, value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._target(elt, UNKNOWN, scope)
        elif isinstance(target, ast.Starred):
            self._target(target.value, UNKNOWN, scope)
        else:  # attribute or subscript target: its sub-expressions are reads
            if target.__class__ is ast.Attribute and target.value.__class__ is ast.Name:
                self.model.attribute_stores.setdefault(scope, []).append((target, value))
            self._expr(target, scope)

    def _import(self, node, scope: Scope) -> None:
        imports = self.model.imports
        for alias in node.names:
            if isinstance(node, ast.Import):
                local = alias.asname or alias.name.partition(".")[0]
                qualified = alias.name if alias.asname else local
            else:
                if alias.name == "*":
                    continue
                base = node.module
                if node.level:
                    base = _absolute_module(self.model.facts, node.level, node.module)
                    if base is None:
                        continue  # outside a project a relative import names nothing known
                if base is None:
                    continue
                local = alias.asname or alias.name
                qualified = f"{base}.{alias.name}"
            # Imports anywhere in the module count; a name imported two ways is ambiguous.
            if local in imports and imports[local] != qualified:
                imports[local] = None
            else:
                imports[local] = qualified
            if scope is self.model.module_scope:
                scope.bind(local, _IMPORT)
            else:
                scope.bind(local, UNKNOWN)

    def _expr(self, node: ast.AST, scope: Scope, reads: Optional[list] = None) -> None:
        # Iterative walk: expressions can nest deeply. A lambda opens a scope: its body is
        # walked on its own, where the stack would have taken it next.
        stack = [node]
        model = self.model
        calls, record = model.calls, (model.reads if reads is None else reads).append
        Call, Name, Attribute, Lambda, NamedExpr = ast.Call, ast.Name, ast.Attribute, ast.Lambda, ast.NamedExpr
        Constant = ast.Constant
        children_of, readers = _CHILDREN, _CHILD_READERS
        pop, push, extend = stack.pop, stack.append, stack.extend
        while stack:
            current = pop()
            cls = current.__class__
            if cls is Name:
                record((current, scope))
                continue  # its only child is the shared context node
            if cls is Constant:
                continue
            if cls is Attribute:
                record((current, scope))
            elif cls is Call:
                calls.append(CallSite(current, scope))
            elif cls is Lambda:
                self._arguments(current.args, scope)
                inner = self._open(current, "function", scope)
                self._bind_params(current.args, inner)
                self._expr(current.body, inner, reads)
                continue
            elif cls is NamedExpr:
                if current.target.__class__ is Name:
                    scope.bind(current.target.id, current.value)
                push(current.value)
                continue
            # the collector meets each expression first: its children are read here (and
            # kept for the index and the rules, see `_child_nodes`)
            read = readers.get(cls)
            if read is None:
                read = _child_reader(current)
            children = children_of[current] = read(current)
            extend(children)


# How the collector visits each kind of statement (by class: parsed trees hold no
# subclasses); any other statement has its children visited generically.
_STATEMENT_VISITS = {
    ast.FunctionDef: _Collector._def, ast.AsyncFunctionDef: _Collector._def, ast.ClassDef: _Collector._class,
    ast.Assign: _Collector._assign, ast.AnnAssign: _Collector._ann_assign, ast.AugAssign: _Collector._aug_assign,
    ast.Import: _Collector._import, ast.ImportFrom: _Collector._import, ast.Global: _Collector._global,
    ast.Nonlocal: _Collector._nonlocal, ast.For: _Collector._for, ast.AsyncFor: _Collector._for,
    ast.With: _Collector._with, ast.AsyncWith: _Collector._with, ast.Try: _Collector._try,
    ast.Delete: _Collector._delete,
}
if hasattr(ast, "TryStar"):  # Python >= 3.11
    _STATEMENT_VISITS[ast.TryStar] = _Collector._try


# Rules keep facts they share on the model, in attributes named ``_zk*`` (``_Ephemeral.of``,
# lifecycle's use index); those facts point back at the model, a reference cycle that
# only the cyclic collector could free, with the whole tree, after scanning it. They are
# dropped when the next model is built, or earlier when a check is done with the file
# (`forget_latest_model`; a rule asking again recomputes the same facts), so each model
# and its tree are freed by reference counting once its reports are done.
_PREVIOUS_MODEL: List[Optional["weakref.ref"]] = [None]


def forget_latest_model() -> None:
    """Drop now what building the next model would drop: the latest model's shared facts
    and the caches of its tree (`_CHILDREN`, `_OWN_NODES`).

    A check calls it when it is done with a file, before the next file is parsed: the
    tree and the model are then freed while they are still in the processor's cache, and
    the next parse reuses their memory. Left for the next model, they were freed after
    the next parse, from memory that parse had pushed out of the cache (in the bench, a
    quarter fewer simulated second-level cache misses, about 1% of a cold run's CPU). All
    of it is cache: a rule asking the model again recomputes it (its new shared facts then
    wait for the cyclic collector).
    """
    latest = _PREVIOUS_MODEL[0]() if _PREVIOUS_MODEL[0] is not None else None
    if latest is not None:
        facts = latest.__dict__
        for name in [name for name in facts if name.startswith("_zk")]:
            del facts[name]
    _PREVIOUS_MODEL[0] = None
    _OWN_NODES.clear()  # the latest model's function bodies (see own_nodes)
    _CHILDREN.clear()


# Each node's children, for the trees of the latest model only (emptied with _OWN_NODES):
# rules walk the same bodies many times, and a lookup is cheaper than re-reading fields.
_CHILDREN: Dict[ast.AST, Tuple[ast.AST, ...]] = {}


def _child_nodes(node: ast.AST) -> Tuple[ast.AST, ...]:
    """The nodes ``ast.iter_child_nodes`` yields, in the same order, as a tuple, less the
    operator and context nodes (``Load``, ``Add``, ``Eq``...) the parser shares between
    parents: nothing asks for them as nodes (rules read ``.ctx`` and ``.op`` directly).

    The model and the rules walk every function several times; the stdlib version (two
    nested generators per node) was the largest single cost in profiles.
    """
    children = _CHILDREN.get(node)
    if children is None:
        read = _CHILD_READERS.get(node.__class__)
        if read is None:
            read = _child_reader(node)
        children = _CHILDREN[node] = read(node)
    return children


# Fields the grammar types as identifier, string, int or constant: they never hold nodes,
# so `_child_nodes` does not look at them (iter_child_nodes looks and finds nothing).
_PLAIN_FIELDS = {
    "FunctionDef": {"name", "type_comment"}, "AsyncFunctionDef": {"name", "type_comment"},
    "ClassDef": {"name"}, "Assign": {"type_comment"}, "For": {"type_comment"},
    "AsyncFor": {"type_comment"}, "With": {"type_comment"}, "AsyncWith": {"type_comment"},
    "AnnAssign": {"simple"}, "ImportFrom": {"module", "level"}, "Global": {"names"},
    "Nonlocal": {"names"}, "Attribute": {"attr"}, "Name": {"id"}, "Constant": {"value", "kind"},
    "FormattedValue": {"conversion"}, "comprehension": {"is_async"}, "ExceptHandler": {"name"},
    "arg": {"arg", "type_comment"}, "keyword": {"arg"}, "alias": {"name", "asname"},
    "MatchSingleton": {"value"}, "MatchStar": {"name"}, "MatchMapping": {"rest"},
    "MatchClass": {"kwd_attrs"}, "MatchAs": {"name"}, "TypeIgnore": {"lineno", "tag"},
}
# Fields holding the shared operator and context nodes (see `_child_nodes`).
_SHARED_FIELDS = frozenset(["ctx", "op", "ops"])
# The two list fields the grammar lets hold None (``{**a}``'s key, a keyword-only
# parameter without default).
_LISTS_WITH_NONE = frozenset([("Dict", "keys"), ("arguments", "kw_defaults")])
_CHILD_READERS: Dict[type, Callable[[ast.AST], Tuple[ast.AST, ...]]] = {}


def _child_reader(node: ast.AST) -> Callable[[ast.AST], Tuple[ast.AST, ...]]:
    """A function reading the children of nodes of `node`'s class, field by field: one
    attribute read per field instead of a loop over the field names.

    The grammar (each class's docstring: ``Call(expr func, expr* args, keyword* keywords)``)
    says which fields are lists, which hold a node always and which may hold None: a class
    without optional fields is read into one tuple display, with no test. Without that
    signature (a Python that does not write it), `node` shows which fields are lists and
    every other field is tested."""
    cls = node.__class__
    if cls.__module__ != "ast":  # a node class of someone else's: read it generically
        read = _CHILD_READERS[cls] = _read_child_nodes
        return read
    plain = _PLAIN_FIELDS.get(cls.__name__, ())
    grammar = _grammar_fields(cls)
    parts: List[Tuple[str, str]] = []  # per child field: ("" always a node | "?" optional | "*" a list, field)
    for name in cls._fields:
        if name in plain or name in _SHARED_FIELDS:
            continue
        if grammar is not None:
            kind, type_name = grammar[name]
            if type_name in _GRAMMAR_VALUES:
                continue
        else:
            kind = "*" if isinstance(getattr(node, name, None), list) else "?"
        parts.append((kind, name))

    def items(name: str) -> str:  # a list field's items (some lists hold None: dropped)
        if (cls.__name__, name) in _LISTS_WITH_NONE:
            return f"[item for item in node.{name} if item is not None]"
        return f"node.{name}"

    if all(kind != "?" for kind, _ in parts):
        lines = ["def read(node):", "    return (" + "".join(
            (f"*{items(name)}, " if kind == "*" else f"node.{name}, ") for kind, name in parts
        ) + ")"]
    else:
        lines = ["def read(node):", "    out = []"]
        for kind, name in parts:
            if kind == "?":
                lines.append(f"    value = getattr(node, {name!r}, None)")
                lines.append("    if isinstance(value, AST):")
                lines.append("        out.append(value)")
            elif kind == "*":
                lines.append(f"    out += {items(name)}")
            else:
                lines.append(f"    out.append(node.{name})")
        lines.append("    return tuple(out)")
    namespace: Dict[str, object] = {"AST": ast.AST}
    exec("\n".join(lines), namespace)  # field names are the grammar's identifiers
    read = _CHILD_READERS[cls] = namespace["read"]  # type: ignore[assignment]
    return read


# The grammar's types that are values, not nodes (``identifier name``, ``constant value``).
_GRAMMAR_VALUES = frozenset({"identifier", "string", "int", "constant", "object", "bytes"})
_GRAMMAR_SIGNATURE = re.compile(r"(\w+)(?:\((.*)\))?\Z")  # ``Pass``: no fields


def _grammar_fields(cls: type) -> Optional[Dict[str, Tuple[str, str]]]:
    """field -> ("" | "?" | "*", type) from the class's grammar signature; None when the
    docstring is not one that names every field."""
    match = _GRAMMAR_SIGNATURE.match((cls.__doc__ or "").strip())
    if match is None or match.group(1) != cls.__name__:
        return None
    fields: Dict[str, Tuple[str, str]] = {}
    for declaration in filter(None, (match.group(2) or "").split(", ")):
        type_name, _, name = declaration.partition(" ")
        kind = type_name[-1] if type_name[-1] in "?*" else ""
        fields[name] = (kind, type_name.rstrip("?*"))
    return fields if set(fields) == set(cls._fields) else None


def _read_child_nodes(node: ast.AST) -> Tuple[ast.AST, ...]:
    return tuple(child for child in ast.iter_child_nodes(node) if child.__class__ not in _SHARED_NODE_TYPES)


_AST = ast.AST
_PATTERN = getattr(ast, "pattern", ())  # Python >= 3.10
# Node classes the parser shares between parents (one ``Load()`` for the whole tree).
_SHARED_NODE_TYPES = frozenset(
    cls
    for base in (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)
    for cls in base.__subclasses__()
)
_SCOPE_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_SCOPE_CLASSES = frozenset(_SCOPE_TYPES)


def child_nodes(node: ast.AST) -> Tuple[ast.AST, ...]:
    """``tuple(ast.iter_child_nodes(node))``, cached per model: for rules' own walks."""
    return _child_nodes(node)


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """``walk(node)``: the same nodes in the same (breadth-first) order, faster."""
    todo = deque([node])
    popleft, extend, get = todo.popleft, todo.extend, _CHILDREN.get
    while todo:
        node = popleft()
        children = get(node)
        if children is None:
            children = _child_nodes(node)
        extend(children)
        yield node


# The model and the rules scan the same function bodies many times (per client, per rule),
# so each body's node list is kept: for the trees of the latest model only (the cache is
# emptied when the next model is built). Keys are the nodes themselves, never ids, and
# trees are never modified after parsing, so an entry cannot go stale.
_OWN_NODES: Dict[ast.AST, List[ast.AST]] = {}


def own_nodes(func: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a function body, not descending into nested functions, lambdas or classes."""
    return iter(own_node_list(func))


def own_node_list(func: ast.AST) -> List[ast.AST]:
    """The nodes `own_nodes` yields, as the model's own list: read it, never change it."""
    nodes = _OWN_NODES.get(func)
    if nodes is None:  # not a body of the model's index (a node built elsewhere)
        nodes = _OWN_NODES[func] = _body_nodes(func, {}, [])
    return nodes


def _body_nodes(owner: ast.AST, parents: Dict[ast.AST, ast.AST], nested: List[ast.AST]) -> List[ast.AST]:
    """The nodes of one body, each mapped to its parent in `parents`.

    A def or class contributes everything under it but the bodies of the scopes nested in
    it, which are listed (not opened) and appended to `nested`; a lambda, its body only
    (its defaults run outside it: mapped, never listed). Leaves are not opened: a Name's
    context node and the operator nodes, which the parser shares between parents, are
    neither listed nor mapped.
    """
    children_of, readers = _CHILDREN, _CHILD_READERS
    get = children_of.get
    if owner.__class__ is ast.Lambda:
        for node in walk(owner.args):
            for child in get(node) or _child_nodes(node):
                parents[child] = node
        parents[owner.args] = owner
        stack = [owner.body]
    else:
        stack = list(get(owner) or _child_nodes(owner))
    for child in stack:
        parents[child] = owner
    nodes: List[ast.AST] = []
    append, pop, extend = nodes.append, stack.pop, stack.extend
    scope_types, name_type, constant_type = _SCOPE_CLASSES, ast.Name, ast.Constant
    while stack:
        node = pop()
        append(node)
        cls = node.__class__
        if cls is name_type or cls is constant_type:
            continue  # leaves
        if cls in scope_types:
            nested.append(node)
            continue
        children = get(node)
        if children is None:  # (`_child_nodes`, inline: most statements are read here first)
            read = readers.get(cls)
            if read is None:
                read = _child_reader(node)
            children = children_of[node] = read(node)
        for child in children:
            parents[child] = node
        extend(children)
    return nodes


class ReadPlace(NamedTuple):
    """Where a read of a variable stands, as the client analyses tell uses from hand-offs:

    - "attribute": ``x.attr`` (`attr`; `store` for ``x.attr = ...``/``del``; `call` the
      call when it is ``x.attr(...)``),
    - "argument": passed to `call` (positionally or by keyword),
    - "test": looked at (a comparison, a boolean operand, ``not x``, an ``if``/``while``/
      ``assert`` test or conditional, an f-string),
    - "other": anything else (stored, returned, yielded, put in a container...).
    """

    kind: str
    attr: Optional[str] = None
    store: bool = False
    call: Optional[ast.Call] = None


def read_place(node: ast.expr, parents: Dict[ast.AST, ast.AST]) -> ReadPlace:
    parent = parents.get(node)
    grandparent = parents.get(parent) if parent is not None else None
    if parent.__class__ is ast.Attribute and parent.value is node:
        called = grandparent.__class__ is ast.Call and grandparent.func is parent
        stored = parent.ctx.__class__ is not ast.Load
        return ReadPlace("attribute", parent.attr, stored, grandparent if called else None)
    call = grandparent if parent.__class__ is ast.keyword else parent
    if call.__class__ is ast.Call and call.func is not node:
        return ReadPlace("argument", call=call)
    if isinstance(parent, (ast.Compare, ast.BoolOp, ast.FormattedValue)):
        return _TESTED
    if isinstance(parent, (ast.If, ast.While, ast.IfExp, ast.Assert)) and parent.test is node:
        return _TESTED
    if parent.__class__ is ast.UnaryOp and parent.op.__class__ is ast.Not:
        return _TESTED
    return _OTHER


_TESTED, _OTHER = ReadPlace("test"), ReadPlace("other")


def _escapes_before_return(func: ast.AST, returns: List[ast.expr]) -> bool:
    """Does a factory also hand the client it returns to someone else?

    ``c = KazooClient(); self._clients.append(c); return c`` registers the client with
    an owner that stops it (a test harness, a pool): calls of such a factory are clients,
    but not ones the caller owns, so the factory is not treated as one at all.
    """
    names = {r.id for r in returns if isinstance(r, ast.Name)}
    if not names:
        return False
    allowed = {id(r) for r in returns}
    for node in own_nodes(func):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            allowed.add(id(node.value))  # c.start(), c.add_listener(...): uses, not escapes
    for node in own_nodes(func):
        if (
            isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load)
            and id(node) not in allowed
        ):
            return True
    return False


def _absolute_module(facts: ModuleFacts, level: int, module: Optional[str]) -> Optional[str]:
    """``from ..x import y`` in module `facts.module`: the absolute name of ``..x``."""
    if facts.module is None:
        return None
    parts = facts.module.split(".")
    if not facts.is_package:
        parts = parts[:-1]  # a module's own package is one level up
    drop = level - 1
    if drop > len(parts) or (drop == len(parts) and not module):
        return None
    base = parts[: len(parts) - drop] if drop else parts
    if module:
        base = base + [module]
    return ".".join(base) if base else None


def _is_none(value: Optional[ast.AST]) -> bool:
    return isinstance(value, ast.Constant) and value.value is None


def _is_parameter(value: Optional[ast.AST], scope: Scope) -> bool:
    """A bare read of a parameter of `scope` that is never rebound there."""
    return (
        isinstance(value, ast.Name) and value.id in scope.params and len(scope.bindings.get(value.id, ())) == 1
    )


def _own_client_branch(expr: ast.AST) -> Optional[Tuple[ast.expr, ast.expr]]:
    """(built, given) for `given if given is not None else built`, its mirror images,
    and `given or built`, where `built` is a call; None for anything else."""
    if isinstance(expr, ast.IfExp):
        for built, given in ((expr.orelse, expr.body), (expr.body, expr.orelse)):
            if isinstance(built, ast.Call) and isinstance(given, ast.Name) and _tests_name(expr.test, given.id):
                return built, given
    elif isinstance(expr, ast.BoolOp) and isinstance(expr.op, ast.Or) and len(expr.values) == 2:
        given, built = expr.values
        if isinstance(given, ast.Name) and isinstance(built, ast.Call):
            return built, given
    return None


def _tests_name(test: ast.AST, name: str) -> bool:
    """`name`, `not name`, `name is None`, `name is not None`."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test = test.operand
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Is, ast.IsNot)):
        if isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value is None:
            test = test.left
    return isinstance(test, ast.Name) and test.id == name


def _own_returns(func: ast.AST) -> Iterator[ast.Return]:
    for node in own_nodes(func):
        if isinstance(node, ast.Return):
            yield node


def _argument(call: ast.Call, position: int, keyword: str) -> Optional[ast.expr]:
    """An argument given by position or by keyword, or None."""
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if len(call.args) > position and not any(isinstance(a, ast.Starred) for a in call.args[: position + 1]):
        return call.args[position]
    return None


def argument(call: ast.Call, position: int, keyword: str) -> Optional[ast.expr]:
    return _argument(call, position, keyword)


def keyword(call: ast.Call, name: str) -> Optional[ast.keyword]:
    for kw in call.keywords:
        if kw.arg == name:
            return kw
    return None
