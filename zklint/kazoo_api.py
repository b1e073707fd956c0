"""Facts about kazoo's API and about blocking calls, shared by the rules.

Everything here is data plus small classifiers over `ast` nodes; the facts come from
kazoo 2.11 (see ``../shared/KAZOO.md``, sections 1 and 2, and the kazoo source cited
there). A classifier answers None when it cannot be sure, so rules stay silent.

- Client operations: which ``KazooClient`` methods wait for a reply (``X`` is
  ``X_async(...).get()`` with no timeout), which have an ``_async`` form, which are
  lifecycle calls.
- Recipes: the classes ``client.Lock(...)``/``kazoo.recipe.lock.Lock(client, ...)``
  build, and which of their methods wait for a ZooKeeper reply or for a watch to fire.
- Blocking stdlib/third-party calls (``time.sleep``, ``subprocess.run``, ``requests.get``,
  ``Event.wait()`` without a timeout, ...), classified through the module's imports.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Dict, FrozenSet, Optional, Tuple

from zklint.model import argument

if TYPE_CHECKING:
    from zklint.model import ClientKey, ModuleModel, Scope

# ---- KazooClient --------------------------------------------------------------------------

# Methods that return only after the server's reply: ``X = X_async(...).get()`` (no timeout),
# plus the ones built on them (KazooClient in kazoo/client.py).
SYNC_CLIENT_OPS: FrozenSet[str] = frozenset({
    "create", "ensure_path", "exists", "get", "get_children", "get_acls", "set_acls", "set",
    "delete", "sync", "add_auth", "reconfig", "retry", "command", "server_version",
})
# Sync operation -> its non-blocking form. ``delete(recursive=True)`` has none.
ASYNC_FORMS: Dict[str, str] = {
    name: name + "_async"
    for name in ("create", "ensure_path", "exists", "get", "get_children", "get_acls", "set_acls", "set",
                 "delete", "sync", "add_auth", "reconfig")
}
ASYNC_OPS: FrozenSet[str] = frozenset(ASYNC_FORMS.values()) | {"start_async", "commit_async"}
# Operations that complete through a rawlink on the completion worker (create_async chains a
# rawlink, ensure_path_async and sync_async build on it): they hang inside a rawlink callback.
COMPLETION_CHAINED_OPS: FrozenSet[str] = frozenset({"create", "ensure_path", "sync"})
# Lifecycle: join or restart the client's own threads.
LIFECYCLE_OPS: FrozenSet[str] = frozenset({"stop", "close", "restart"})
# Methods taking a raw ``watch`` callback, and its position.
WATCH_METHODS: Dict[str, int] = {
    "get": 1, "get_async": 1, "exists": 1, "exists_async": 1, "get_children": 1, "get_children_async": 1,
}

# ---- recipes ------------------------------------------------------------------------------

# client.<Factory>(...) -> the recipe class it builds (KazooClient.__init__: partial(Cls, self)).
RECIPE_FACTORIES: Dict[str, str] = {
    "Barrier": "kazoo.recipe.barrier.Barrier",
    "Counter": "kazoo.recipe.counter.Counter",
    "DoubleBarrier": "kazoo.recipe.barrier.DoubleBarrier",
    "ChildrenWatch": "kazoo.recipe.watchers.ChildrenWatch",
    "DataWatch": "kazoo.recipe.watchers.DataWatch",
    "Election": "kazoo.recipe.election.Election",
    "NonBlockingLease": "kazoo.recipe.lease.NonBlockingLease",
    "MultiNonBlockingLease": "kazoo.recipe.lease.MultiNonBlockingLease",
    "Lock": "kazoo.recipe.lock.Lock",
    "ReadLock": "kazoo.recipe.lock.ReadLock",
    "WriteLock": "kazoo.recipe.lock.WriteLock",
    "Party": "kazoo.recipe.party.Party",
    "Queue": "kazoo.recipe.queue.Queue",
    "LockingQueue": "kazoo.recipe.queue.LockingQueue",
    "SetPartitioner": "kazoo.recipe.partitioner.SetPartitioner",
    "Semaphore": "kazoo.recipe.lock.Semaphore",
    "ShallowParty": "kazoo.recipe.party.ShallowParty",
}
TREE_CACHE = "kazoo.recipe.cache.TreeCache"
KAZOO_RETRY = "kazoo.retry.KazooRetry"
RECIPE_CLASSES: FrozenSet[str] = frozenset(RECIPE_FACTORIES.values()) | {TREE_CACHE}
_WATCHERS = ("kazoo.recipe.watchers.DataWatch", "kazoo.recipe.watchers.ChildrenWatch")

_LOCKS = ("kazoo.recipe.lock.Lock", "kazoo.recipe.lock.ReadLock", "kazoo.recipe.lock.WriteLock",
          "kazoo.recipe.lock.Semaphore")

# Recipe methods that make synchronous client calls (they hang on the connection thread).
RECIPE_SYNC_METHODS: Dict[str, FrozenSet[str]] = {
    **{cls: frozenset({"acquire", "release", "contenders"}) for cls in _LOCKS},
    "kazoo.recipe.election.Election": frozenset({"run", "contenders"}),
    "kazoo.recipe.barrier.Barrier": frozenset({"create", "remove", "wait"}),
    "kazoo.recipe.barrier.DoubleBarrier": frozenset({"enter", "leave"}),
    "kazoo.recipe.party.Party": frozenset({"join", "leave"}),
    "kazoo.recipe.party.ShallowParty": frozenset({"join", "leave"}),
    "kazoo.recipe.queue.Queue": frozenset({"get", "put", "put_all"}),
    "kazoo.recipe.queue.LockingQueue": frozenset({"get", "put", "put_all", "consume", "holds_lock", "release"}),
    TREE_CACHE: frozenset({"start"}),
}
# Recipe calls that wait for a watch to fire, with no timeout given. On the callback worker
# (watch callbacks, DataWatch/ChildrenWatch functions) that watch can never be delivered.
# method -> the keyword (and position) of its timeout, or None when it takes none.
RECIPE_WATCH_WAITS: Dict[str, Dict[str, Optional[Tuple[str, int]]]] = {
    **{cls: {"acquire": ("timeout", 1)} for cls in _LOCKS},
    "kazoo.recipe.election.Election": {"run": None},
    "kazoo.recipe.barrier.Barrier": {"wait": ("timeout", 0)},
    "kazoo.recipe.barrier.DoubleBarrier": {"enter": None, "leave": None},
    "kazoo.recipe.queue.LockingQueue": {"get": ("timeout", 0)},
}

# ---- blocking stdlib and third-party calls --------------------------------------------------

# Qualified function -> what it waits for (for the message).
BLOCKING_FUNCTIONS: Dict[str, str] = {
    "time.sleep": "sleeps",
    "input": "waits for terminal input",
    "os.system": "waits for a child process",
    "os.wait": "waits for a child process",
    "os.waitpid": "waits for a child process",
    "socket.create_connection": "opens a network connection",
    "socket.getaddrinfo": "resolves DNS",
    "socket.gethostbyname": "resolves DNS",
    "urllib.request.urlopen": "does HTTP I/O",
    "urllib.request.urlretrieve": "does HTTP I/O",
    "smtplib.SMTP": "opens an SMTP connection",
    "smtplib.SMTP_SSL": "opens an SMTP connection",
    "ftplib.FTP": "opens an FTP connection",
}
for _name in ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
    BLOCKING_FUNCTIONS[f"subprocess.{_name}"] = "waits for a child process"
for _module in ("requests", "httpx"):
    for _name in ("get", "post", "put", "patch", "delete", "head", "options", "request"):
        BLOCKING_FUNCTIONS[f"{_module}.{_name}"] = "does HTTP I/O"

# Methods of constructed objects that block: class -> method -> (timeout keyword and
# position, or None when any call blocks; what it waits for).
_Wait = Tuple[Optional[Tuple[str, int]], str]
BLOCKING_METHODS: Dict[str, Dict[str, _Wait]] = {
    "threading.Thread": {"join": (("timeout", 0), "waits for a thread to finish")},
    "threading.Event": {"wait": (("timeout", 0), "waits for an event")},
    "threading.Condition": {"wait": (("timeout", 0), "waits on a condition")},
    "threading.Barrier": {"wait": (("timeout", 0), "waits on a barrier")},
    "subprocess.Popen": {
        "wait": (("timeout", 0), "waits for a child process"),
        "communicate": (("timeout", 1), "waits for a child process"),
    },
    "socket.socket": {"connect": (None, "opens a network connection")},
    "http.client.HTTPConnection": {
        "request": (None, "does HTTP I/O"), "getresponse": (None, "does HTTP I/O"),
        "connect": (None, "does HTTP I/O"),
    },
    "http.client.HTTPSConnection": {
        "request": (None, "does HTTP I/O"), "getresponse": (None, "does HTTP I/O"),
        "connect": (None, "does HTTP I/O"),
    },
    "requests.Session": {
        name: (None, "does HTTP I/O")
        for name in ("get", "post", "put", "patch", "delete", "head", "options", "request")
    },
}
for _cls in ("threading.Lock", "threading.RLock", "threading.Semaphore", "threading.BoundedSemaphore"):
    BLOCKING_METHODS[_cls] = {"acquire": (("timeout", 1), "waits for a lock")}
for _cls in ("queue.Queue", "queue.LifoQueue", "queue.PriorityQueue", "queue.SimpleQueue"):
    BLOCKING_METHODS[_cls] = {"get": (("timeout", 1), "waits for a queue item")}
# Any blocking method's name: a call of another method needs no look at its receiver.
_BLOCKING_METHOD_NAMES = frozenset(method for methods in BLOCKING_METHODS.values() for method in methods)


_UNASKED = object()  # `Api.object_class` has not answered for this expression yet


def _literal_false(node: Optional[ast.AST]) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _opaque(call: ast.Call) -> bool:
    """``f(*args)`` / ``f(**kw)``: the arguments cannot be read."""
    return any(isinstance(a, ast.Starred) for a in call.args) or any(kw.arg is None for kw in call.keywords)


def waits_without_timeout(call: ast.Call, timeout: Optional[Tuple[str, int]], cls: str, method: str) -> bool:
    """Whether a call of a timeout-taking blocking method can wait forever as written."""
    if timeout is None:
        return True
    if _opaque(call):
        return False
    name, position = timeout
    given = argument(call, position, name)
    if given is not None and not (isinstance(given, ast.Constant) and given.value is None):
        return False
    # Non-blocking forms: lock.acquire(False), queue.get(False), lock.acquire(blocking=False).
    if method in ("acquire", "get") and (cls.startswith(("threading.", "queue.")) or cls in _LOCKS):
        blocking = argument(call, 0, "block" if cls.startswith("queue.") else "blocking")
        if blocking is not None and (_literal_false(blocking) or not isinstance(blocking, ast.Constant)):
            return False
    return True


class Api:
    """The classifiers, bound to one module's model."""

    def __init__(self, model: "ModuleModel") -> None:
        self.model = model
        # (expression, scope) -> `object_class`: every callback rule asks about the same
        # receivers, and the answer needs their bindings looked up.
        self._object_classes: Dict[Tuple[ast.AST, "Scope"], Optional[Tuple[str, Optional["ClientKey"]]]] = {}

    # -- objects ----------------------------------------------------------------------------

    def recipe_of_call(self, call: ast.Call, scope: "Scope") -> Optional[Tuple[str, Optional["ClientKey"]]]:
        """(recipe class, its client) when `call` constructs a kazoo recipe object."""
        model = self.model
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in RECIPE_FACTORIES:
            key = model.client_key(func.value, scope)
            if key is not None:
                return RECIPE_FACTORIES[func.attr], key
            return None
        qual = model.qualname(func)
        if qual in RECIPE_CLASSES and call.args and not isinstance(call.args[0], ast.Starred):
            return qual, model.client_key(call.args[0], scope)
        return None

    def object_class(self, expr: ast.AST, scope: "Scope") -> Optional[Tuple[str, Optional["ClientKey"]]]:
        """(class, client for recipes) of the object `expr` always holds, else None."""
        key = (expr, scope)
        found = self._object_classes.get(key, _UNASKED)
        if found is _UNASKED:
            found = self._object_classes[key] = self._object_class(expr, scope)
        return found

    def _object_class(self, expr: ast.AST, scope: "Scope") -> Optional[Tuple[str, Optional["ClientKey"]]]:
        constructions = self.model.constructions(expr, scope)
        if not constructions:
            return None
        found = None
        for call, call_scope in constructions:
            recipe = self.recipe_of_call(call, call_scope)
            if recipe is None:
                qual = self.model.qualname(call.func)
                if qual is None or (qual not in BLOCKING_METHODS and qual not in RECIPE_CLASSES
                                    and qual != KAZOO_RETRY):
                    return None
                recipe = (qual, None)
            if found is not None and found != recipe:
                return None
            found = recipe
        return found

    # -- calls ------------------------------------------------------------------------------

    def blocking_call(self, call: ast.Call, scope: "Scope") -> Optional[str]:
        """What a stdlib/third-party blocking call waits for ("sleeps", ...), else None."""
        model = self.model
        qual = model.qualname(call.func)
        if qual is None and isinstance(call.func, ast.Name) and call.func.id == "input":
            if model.lookup("input", scope) is None:
                qual = "input"
        if qual in BLOCKING_FUNCTIONS:
            first = call.args[0] if call.args else None
            if qual == "time.sleep" and isinstance(first, ast.Constant) and first.value == 0:
                return None  # sleep(0) only yields
            return BLOCKING_FUNCTIONS[qual]
        if isinstance(call.func, ast.Attribute) and call.func.attr in _BLOCKING_METHOD_NAMES:
            owner = self.object_class(call.func.value, scope)
            if owner is not None:
                cls, _ = owner
                entry = BLOCKING_METHODS.get(cls, {}).get(call.func.attr)
                if entry is not None:
                    timeout, what = entry
                    if waits_without_timeout(call, timeout, cls, call.func.attr):
                        return what
        return None

    def client_op(self, call: ast.Call, scope: "Scope") -> Optional[Tuple["ClientKey", str]]:
        """(client, method) for ``<client>.<method>(...)``."""
        if isinstance(call.func, ast.Attribute):
            key = self.model.client_key(call.func.value, scope)
            if key is not None:
                return key, call.func.attr
        return None

    def sync_client_op(self, call: ast.Call, scope: "Scope") -> Optional[Tuple["ClientKey", str]]:
        """A client call that waits for the server's reply: (client, what it is, for messages).

        ``zk.create(...)``, ``zk.retry(...)``, ``zk.transaction().commit()``,
        ``t.commit()`` on a transaction of the client, ``zk.get_async(p).get()``.
        """
        model = self.model
        op = self.client_op(call, scope)
        if op is not None:
            key, method = op
            if method == "retry" and _retries_async_only(call):
                return None  # retry(zk.add_auth_async, ...) waits no more than its function does
            if method in SYNC_CLIENT_OPS:
                return key, method
            return None
        func = call.func
        if call.args and isinstance(call.args[0], ast.Attribute) and call.args[0].attr in SYNC_CLIENT_OPS:
            # KazooRetry(...)(zk.create, ...) / retry(zk.create, ...) with a KazooRetry object
            retry = self.object_class(func, scope)
            if retry is not None and retry[0] == KAZOO_RETRY:
                key = model.client_key(call.args[0].value, scope)
                if key is not None:
                    return key, call.args[0].attr
        if not isinstance(func, ast.Attribute):
            return None
        if func.attr == "commit":
            key = self.transaction_client(func.value, scope)
            if key is not None:
                return key, "transaction commit"
        if func.attr == "get" and not call.args and not call.keywords:
            target = func.value
            if isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute) \
                    and target.func.attr in ASYNC_OPS:
                key = model.client_key(target.func.value, scope)
                if key is not None:
                    return key, f"{target.func.attr}().get"
        return None

    def transaction_client(self, expr: ast.AST, scope: "Scope") -> Optional["ClientKey"]:
        """The client of ``zk.transaction()`` (or a name bound only to it)."""
        model = self.model
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "transaction":
            return model.client_key(expr.func.value, scope)
        constructions = model.constructions(expr, scope) if isinstance(expr, ast.Name) else None
        if constructions and len(constructions) == 1:
            call, call_scope = constructions[0]
            if isinstance(call.func, ast.Attribute) and call.func.attr == "transaction":
                return model.client_key(call.func.value, call_scope)
        return None

    def recipe_call(self, call: ast.Call, scope: "Scope") -> Optional[Tuple[str, str, Optional["ClientKey"]]]:
        """(recipe class, method, client) for a method call on a recipe object.

        Also a recipe constructor that does I/O at once: ``DataWatch``/``ChildrenWatch``
        given their function (method ``__init__``).
        """
        func = call.func
        if isinstance(func, ast.Attribute):
            owner = self.object_class(func.value, scope)
            if owner is None and isinstance(func.value, ast.Call):
                owner = self.recipe_of_call(func.value, scope)
            if owner is not None and owner[0] in RECIPE_CLASSES:
                return owner[0], func.attr, owner[1]
        recipe = self.recipe_of_call(call, scope)
        if recipe is not None and recipe[0] in _WATCHERS:
            offset = 0 if isinstance(func, ast.Attribute) else 1
            if argument(call, 1 + offset, "func") is not None:
                return recipe[0], "__init__", recipe[1]
        return None

    def recipe_sync_call(self, call: ast.Call, scope: "Scope") -> Optional[Tuple[str, str, Optional["ClientKey"]]]:
        """A recipe call that makes synchronous client calls."""
        found = self.recipe_call(call, scope)
        if found is None:
            return None
        cls, method, key = found
        if method == "__init__" or method in RECIPE_SYNC_METHODS.get(cls, ()):
            return found
        return None

    def recipe_watch_wait(self, call: ast.Call, scope: "Scope") -> Optional[Tuple[str, str, Optional["ClientKey"]]]:
        """A recipe call that waits, with no timeout, for a watch to fire."""
        found = self.recipe_call(call, scope)
        if found is None:
            return None
        cls, method, key = found
        waits = RECIPE_WATCH_WAITS.get(cls, {})
        if method not in waits:
            return None
        if not waits_without_timeout(call, waits[method], cls, method):
            return None
        return found

    def recipe_context(self, expr: ast.AST, scope: "Scope") -> Optional[Tuple[str, Optional["ClientKey"]]]:
        """``with lock:`` on a kazoo lock/semaphore: (class, client)."""
        owner = self.object_class(expr, scope)
        if owner is None and isinstance(expr, ast.Call):
            owner = self.recipe_of_call(expr, scope)
        if owner is not None and owner[0] in _LOCKS:
            return owner
        return None


def short_class(qualified: str) -> str:
    return qualified.rpartition(".")[2]


def _retries_async_only(call: ast.Call) -> bool:
    """``retry(zk.get_async, ...)``: the retried function only queues a request."""
    first = call.args[0] if call.args else None
    return isinstance(first, ast.Attribute) and first.attr.endswith("_async")
