"""ZK3: callbacks and kazoo's threads.

kazoo calls user code back on its own threads (../shared/KAZOO.md section 1): state
listeners inline on the connection thread, watch callbacks and DataWatch/ChildrenWatch
functions one at a time on the callback worker, rawlink callbacks on the completion
worker, TreeCache listeners on the cache's thread. What a callback may do depends on
the thread: blocking delays every other callback on it (ZK301), some kazoo calls wait
for that very thread and never return (ZK302), stop()/close()/restart() join it from
inside (ZK303). Raw watches fire once and die at the first disconnect (ZK304).

The callbacks come from the model (`ModuleModel.callbacks()`); calls are classified by
`zklint.kazoo_api`. A callback's body is scanned, and one level further into a function
or method of the same module it calls directly.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from zklint.lazy_import import libcst as cst  # imported on first use: fixes only

from zklint import kazoo_api
from zklint.fixer import FixError, parse_statement, statements_edit
from zklint.flow import Flow, exits, own_descendants
from zklint.kazoo_api import Api
from zklint.model import (
    Callback, CallbackKind, CallIndex, CallSite, ClientKey, FunctionNode, Scope, argument, child_nodes, keyword, walk,
)
from zklint.findings import Edit, Finding, Safety
from zklint.rules.base import Rule, register
from zklint.rules.index import calls_to

_DEF_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_NESTED_CLASSES = frozenset(_NESTED)
# Statements whose body cannot be split: moving part of it to another thread would take
# it out of its loop, its lock/context or its exception handlers.
_UNSPLITTABLE = (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)
_TRY_TYPES = tuple(t for t in (ast.Try, getattr(ast, "TryStar", None)) if t is not None)
_UNSPLITTABLE = _UNSPLITTABLE + _TRY_TYPES

_THREAD = {
    CallbackKind.STATE_LISTENER: "the connection thread reads no reply, ping or event meanwhile",
    CallbackKind.WATCH: "every other watch waits on kazoo's single callback thread",
    CallbackKind.DATA_WATCH: "every other watch waits on kazoo's single callback thread",
    CallbackKind.CHILDREN_WATCH: "every other watch waits on kazoo's single callback thread",
    CallbackKind.COMPLETION: "every other async result waits on kazoo's single completion thread",
    CallbackKind.TREE_CACHE: "the cache's other events wait on its one thread",
}
_WATCH_KINDS = (CallbackKind.WATCH, CallbackKind.DATA_WATCH, CallbackKind.CHILDREN_WATCH)


# How many calls deep a callback's helpers of the same module are followed.
_HELPER_DEPTH = 3


def _describe(call: ast.Call) -> str:
    text = ast.unparse(call.func)
    if len(text) > 40:
        text = "…" + text[-39:]
    return text + "()"


# The only node types a callback rule's classifier accepts.
_CLASSIFIED = frozenset({ast.Call, ast.With, ast.AsyncWith})
# Nodes with nothing a classifier accepts below them: names and constants (a name's only
# child is its context node) and the context nodes themselves.
_LEAVES = frozenset({ast.Name, ast.Constant, ast.Load, ast.Store, ast.Del})


class _BodyScan:
    """What the callback rules look at in one function's own body, in body order.

    Their classifiers only ever accept calls and ``with`` statements (`candidates`); calls
    of a name or attribute may reach a helper of the module (`helper_calls`, each with the
    def it resolves to in the function's scope, None when there is none).
    """

    __slots__ = ("candidates", "helper_calls")

    def __init__(self, model, func: FunctionNode, scope: Scope) -> None:
        self.candidates: List[ast.AST] = []
        self.helper_calls: List[Tuple[ast.Call, Optional[FunctionNode]]] = []
        # The body's own nodes in source (depth-first) order, not entering nested functions,
        # lambdas or classes: one loop, as this runs for every callback and helper.
        stack: List[ast.AST] = [func.body] if isinstance(func, ast.Lambda) else func.body[::-1]
        pop, push = stack.pop, stack.extend
        Call, candidate_types, callee_types = ast.Call, _CLASSIFIED, (ast.Name, ast.Attribute)
        leaves, nested = _LEAVES, _NESTED_CLASSES
        while stack:
            node = pop()
            cls = node.__class__
            if cls in candidate_types:
                self.candidates.append(node)
                if cls is Call and node.func.__class__ in callee_types:
                    self.helper_calls.append((node, model.resolve_function(node.func, scope)))
            if cls in leaves or cls in nested:
                continue
            push(child_nodes(node)[::-1])


def _body_scan(model, func: FunctionNode, scope: Scope) -> _BodyScan:
    """`_BodyScan` of `func` (whose scope is `scope`), kept on the model: several rules scan
    each callback, and each helper once per callback that reaches it."""
    cache = model.__dict__.get("_zk3_body_scans")
    if cache is None:
        cache = model.__dict__["_zk3_body_scans"] = {}
    scan = cache.get(func)
    if scan is None:
        scan = cache[func] = _BodyScan(model, func, scope)
    return scan


@dataclass(frozen=True)
class Hit:
    """Something in a callback's body that must not run on the callback's thread."""

    call: ast.AST  # the call (or ``with`` statement) in the callback's own body
    subject: str  # "time.sleep()", or "self.reload() (calls time.sleep() on line 30)"
    verb: str  # "sleeps", "waits", ...
    direct: bool  # the call itself blocks (False: it calls a function that does)
    method: Optional[str] = None  # client method, for the _async form

    @property
    def what(self) -> str:
        return f"{self.subject} {self.verb}"


class _CallbackRule(Rule):
    """Shared machinery: scanning callbacks (one call level deep) and the spawn fix."""

    def api(self) -> Api:
        api = getattr(self.context, "_zk_api", None)
        if api is None:
            api = Api(self.model)
            self.context._zk_api = api
        return api

    def scope(self, func: FunctionNode) -> Optional[Scope]:
        return self.model.function_scope(func)

    def hits_in(self, func: FunctionNode, classify) -> Iterator[Tuple[ast.AST, str, str, Optional[str]]]:
        """(node, description, verb, client method) for every node of `func`'s body `classify` accepts."""
        scope = self.scope(func)
        if scope is None:
            return
        for node in _body_scan(self.model, func, scope).candidates:
            found = classify(node, scope)
            if found is not None:
                yield (node,) + tuple(found)

    def callback_hits(self, cb: Callback, classify, project=None) -> Iterator[Hit]:
        """Hits in the callback's body, and calls of functions that have hits: functions
        of the module up to _HELPER_DEPTH calls away, then what the project layer says
        of the function a call reaches (`project(call, scope)` -> (what, verb) or None)."""
        scope = self.scope(cb.function)
        if scope is None:
            return
        for node, desc, verb, method in self.hits_in(cb.function, classify):
            yield Hit(node, desc, verb, True, method)
        for node, target in _body_scan(self.model, cb.function, scope).helper_calls:
            found = self._helper_hit(target, classify, {id(cb.function)}, 1)
            if found is None and project is not None:
                found = project(node, scope)
                found = found + (None,) if found is not None else None
            if found is not None:
                what, verb, method = found
                yield Hit(node, f"{_describe(node)} (calls {what})", verb, False, method)

    def _helper_hit(self, target: Optional[FunctionNode], classify, seen: Set[int], depth: int):
        """(what, verb, method) for the first hit in `target`, the module's function a call
        reaches (None: none), or in the functions it calls in turn."""
        if target is None or id(target) in seen or not isinstance(target, ast.FunctionDef):
            return None
        seen.add(id(target))
        for inner, desc, verb, method in self.hits_in(target, classify):
            return f"{desc} on line {inner.lineno}", verb, method
        target_scope = self.scope(target)
        if depth >= _HELPER_DEPTH or target_scope is None:
            return None
        for node, inner_target in _body_scan(self.model, target, target_scope).helper_calls:
            found = self._helper_hit(inner_target, classify, seen, depth + 1)
            if found is not None:
                return f"{_describe(node)}, which calls {found[0]}", found[1], found[2]
        return None

    def project_blocking(self, call: ast.Call, scope: Scope) -> Optional[Tuple[str, str]]:
        """A function of another module (or one the project layer follows) that blocks."""
        if not self.model.facts.blocking:
            return None
        qual = self.model.callee(call.func, scope)
        return self.model.facts.blocking.get(qual) if qual is not None else None

    def project_synchronous(self, cb: Callback, call: ast.Call, scope: Scope) -> Optional[Tuple[str, str]]:
        """A function handed the callback's own client that calls it synchronously."""
        model = self.model
        if cb.client is None or not model.facts.synchronous:
            return None
        qual = model.callee(call.func, scope)
        if qual is None:
            return None
        for arg in list(call.args) + [k.value for k in call.keywords]:
            if model.read_key(arg, scope) == cb.client:
                slot = model.facts_parameter(qual, call, arg)
                what = model.facts.synchronous.get((qual, slot)) if slot is not None else None
                if what is not None:
                    return what, "waits"
        return None

    # ---- the client a fix can name inside the callback --------------------------------------

    def client_text(self, cb: Callback) -> Optional[str]:
        """Source text that reads the callback's client inside the callback, if any."""
        key = cb.client
        scope = self.scope(cb.function)
        if key is None or scope is None:
            return None
        if key.kind == "name":
            candidate = ast.Name(id=key.name, ctx=ast.Load())
            return key.name if self.model.client_key(candidate, scope) == key else None
        if key.kind == "attr":
            current: Optional[Scope] = scope
            while current is not None and current.kind == "function":
                self_name = current.self_name
                if self_name:
                    owner = ast.Name(id=self_name, ctx=ast.Load())
                    candidate = ast.Attribute(value=owner, attr=key.name, ctx=ast.Load())
                    if self.model.client_key(candidate, scope) == key:
                        return f"{self_name}.{key.name}"
                    return None
                current = current.parent
        return None

    # ---- the spawn fix -------------------------------------------------------------------------

    def spawn_build(self, cb: Callback, hit: Hit, prefer_async: bool):
        """The fix's builder, or None when the shape is one the fix refuses (checked on the AST)."""
        try:
            plan = self._spawn_plan(cb, hit, prefer_async)
        except FixError:
            return None

        def build(source) -> Optional[List[Edit]]:
            return self._spawn_edits(source, plan)

        return build

    def _spawn_plan(self, cb: Callback, hit: Hit, prefer_async: bool) -> tuple:
        """How to move `hit` off the callback's thread:

        ("async", call): the call becomes its ``_async`` form;
        ("call", call, client): ``client.handler.spawn(func, args...)``;
        ("nested", statements, client, name): the statements move into ``def name():``, spawned.
        """
        func = cb.function
        if isinstance(func, ast.AsyncFunctionDef):
            raise FixError("async callback")
        parents = self.model.parents()
        call = hit.call
        is_call = isinstance(call, ast.Call)
        async_ok = (
            is_call and prefer_async and hit.direct and hit.method in kazoo_api.ASYNC_FORMS
            and isinstance(call.func, ast.Attribute) and call.func.attr == hit.method
            and not (hit.method == "delete" and keyword(call, "recursive") is not None)
        )
        if isinstance(func, ast.Lambda):
            if func.body is not call:
                # The whole body moves into a thread: `lambda e: f(g(x))` becomes
                # `lambda e: c.handler.spawn(lambda: f(g(x)))`. Its value is lost, so only
                # where kazoo ignores a callback's return value (a raw watch, a rawlink
                # completion); a listener (True removes it) and a DataWatch/ChildrenWatch
                # (False stops it) read it.
                if cb.kind not in (CallbackKind.WATCH, CallbackKind.COMPLETION):
                    raise FixError("blocking call inside a larger lambda whose value kazoo reads")
                if any(isinstance(n, (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)) for n in walk(func.body)):
                    raise FixError("the lambda's body binds or suspends")
                client = self.client_text(cb)
                if client is None:
                    raise FixError("nothing to spawn with")
                return ("wrap", func.body, client)
            if async_ok:
                return ("async", call)
            client = self.client_text(cb)
            if client is None or hit.verb == "sleeps" or not is_call or keyword(call, "func") is not None:
                raise FixError("nothing to spawn with")
            return ("call", call, client)
        stmt = call if isinstance(call, ast.stmt) else _enclosing_statement(call, parents, func)
        if stmt is None:
            raise FixError("call outside a statement")
        if async_ok and isinstance(stmt, ast.Expr) and stmt.value is call:
            block, index = _block_of(stmt, parents, func)
            guards = _TRY_TYPES + (ast.With, ast.AsyncWith)
            guarded = any(isinstance(a, guards) for a in _ancestors(stmt, parents, func))
            if index == len(block) - 1 and not guarded:
                return ("async", call)
        client = self.client_text(cb)
        if client is None:
            raise FixError("the callback's client cannot be named inside it")
        # climb out of loops, with-blocks and try-blocks: their bodies cannot be split
        for ancestor in _ancestors(stmt, parents, func):
            if isinstance(ancestor, _UNSPLITTABLE):
                stmt = ancestor
        block, index = _block_of(stmt, parents, func)
        region = block[index:]
        _check_region(func, region)
        if len(region) == 1 and isinstance(stmt, ast.Expr) and stmt.value is call and is_call:
            if hit.verb == "sleeps":
                raise FixError("a sleep with nothing after it: no work to hand off")
            if keyword(call, "func") is not None:
                raise FixError("a keyword argument named func would clash with spawn's own")
            return ("call", call, client)
        return ("nested", region, client, _fresh_name(func, "work"), index == 0)

    def _spawn_edits(self, source, plan: tuple) -> List[Edit]:
        if plan[0] == "async":
            return [self._async_edit(source, plan[1])]
        if plan[0] == "call":
            return [self._spawn_call_edit(source, plan[1], plan[2])]
        if plan[0] == "wrap":
            start, end = source.node_span(plan[1])
            return [Edit(start, end, f"{plan[2]}.handler.spawn(lambda: {source.text[start:end]})")]
        _, region, client, name, starts_block = plan

        def transform(stmts: List[cst.BaseStatement]) -> List[cst.BaseStatement]:
            first = stmts[0]
            # blank lines above the first moved statement stay above the def, its comments stay on it
            leading = list(first.leading_lines)
            split = next((i for i, line in enumerate(leading) if line.comment is not None), len(leading))
            moved = [first.with_changes(leading_lines=leading[split:])] + list(stmts[1:])
            header = parse_statement(source, f"def {name}():\n    pass")
            body = header.body.with_changes(body=moved, indent=source.indent_unit)
            above = leading[:split]
            previous = source.line_text(region[0].lineno - 1).strip()
            if not starts_block and not above and previous and not previous.startswith("#"):
                above = [cst.EmptyLine(indent=False)]  # pycodestyle E306: a blank line before a nested def
            definition = header.with_changes(body=body, leading_lines=above)
            spawn = parse_statement(source, f"{client}.handler.spawn({name})")
            return [definition, spawn]

        return [statements_edit(source, region, transform)]

    @staticmethod
    def _async_edit(source, call: ast.Call) -> Edit:
        func = call.func
        start, end = source.node_span(func)
        text = source.text[start:end]
        if not text.endswith(func.attr):
            raise FixError("unexpected method spelling")
        return Edit(start, end, text + "_async")

    @staticmethod
    def _spawn_call_edit(source, call: ast.Call, client: str) -> Edit:
        start, end = source.node_span(call)
        func_start, func_end = source.node_span(call.func)
        if call.args or call.keywords:
            # the arguments as written, from the first one to the closing parenthesis
            first = min(list(call.args) + list(call.keywords), key=lambda n: (n.lineno, n.col_offset))
            rest = ", " + source.text[source.offset(first.lineno, first.col_offset):end]
        else:
            rest = ")"
        return Edit(start, end, f"{client}.handler.spawn({source.text[func_start:func_end]}{rest}")


# ---- region helpers ------------------------------------------------------------------------

def _enclosing_statement(node: ast.AST, parents: Dict[ast.AST, ast.AST], func) -> Optional[ast.stmt]:
    current = node
    while current is not None and current is not func:
        if isinstance(current, ast.stmt):
            return current
        current = parents.get(current)
    return None


def _ancestors(stmt: ast.AST, parents: Dict[ast.AST, ast.AST], func) -> Iterator[ast.AST]:
    current = parents.get(stmt)
    while current is not None and current is not func:
        yield current
        current = parents.get(current)


def _block_of(stmt: ast.stmt, parents: Dict[ast.AST, ast.AST], func) -> Tuple[List[ast.stmt], int]:
    parent = parents.get(stmt)
    if parent is None:
        raise FixError("statement without a parent")
    for field_name in ("body", "orelse", "finalbody"):
        block = getattr(parent, field_name, None)
        if isinstance(block, list):
            for index, item in enumerate(block):
                if item is stmt:
                    return block, index
    raise FixError("statement in an unsupported block")


def _bound_names(nodes: Sequence[ast.AST]) -> Set[str]:
    names: Set[str] = set()
    for top in nodes:
        for node in walk(top):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.add((alias.asname or alias.name).partition(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
            elif type(node).__name__ in ("MatchAs", "MatchStar") and getattr(node, "name", None):
                names.add(node.name)
    return names


def _check_region(func: ast.FunctionDef, region: Sequence[ast.stmt]) -> None:
    """Refuse regions that cannot move into a nested function unchanged."""
    region_ids = set()
    for stmt in region:
        region_ids.update(id(n) for n in walk(stmt))
    for stmt in region:
        for node in own_descendants(stmt):
            if isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom, ast.Await, ast.Global, ast.Nonlocal)):
                raise FixError("the moved code returns, yields, awaits or declares globals")
        if _escaping_jump(stmt, 0):
            raise FixError("break/continue would leave its loop")
    bound = _bound_names(region)
    outside: Set[str] = set()
    args = func.args
    for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
        if arg is not None:
            outside.add(arg.arg)
    for node in walk(func):
        if id(node) in region_ids:
            continue
        if isinstance(node, ast.Name):
            outside.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            outside.update(node.names)
    shared = bound & outside
    if shared:
        raise FixError(f"the moved code binds names used elsewhere in the callback: {sorted(shared)}")


def _escaping_jump(node: ast.AST, loops: int) -> bool:
    if isinstance(node, (ast.Break, ast.Continue)):
        return loops == 0
    if isinstance(node, _NESTED):
        return False
    if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
        return any(_escaping_jump(s, loops + 1) for s in node.body) or any(
            _escaping_jump(s, loops) for s in node.orelse
        )
    return any(_escaping_jump(child, loops) for child in ast.iter_child_nodes(node))


def _fresh_name(func: ast.AST, base: str) -> str:
    used = {n.id for n in walk(func) if isinstance(n, ast.Name)} | _bound_names([func])
    if base not in used:
        return base
    index = 2
    while f"{base}_{index}" in used:
        index += 1
    return f"{base}_{index}"


# ---- ZK301 ---------------------------------------------------------------------------------

@register
class BlockingCallInCallback(_CallbackRule):
    code = "ZK301"
    name = "blocking-call-in-callback"
    summary = "A kazoo callback sleeps, waits or does slow I/O on kazoo's own thread."
    why = (
        "kazoo runs callbacks on a few threads of its own (KAZOO.md §1): state listeners on the "
        "connection thread, watch callbacks and DataWatch/ChildrenWatch functions one at a time on "
        "a single callback thread, rawlink callbacks on a single completion thread. A callback that "
        "sleeps, runs a subprocess, makes an HTTP request, or waits on an Event/Queue/Lock/Thread "
        "without a timeout holds that thread: every other watch, DataWatch and completion waits "
        "behind it, and in a state listener the client stops reading replies and pings, so a long "
        "wait can expire the session. Hand the slow work to another thread."
    )
    example = (
        "import time\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "\n"
        "\n"
        "@zk.DataWatch(\"/app/config\")\n"
        "def on_config(data, stat):\n"
        "    time.sleep(5)  # let the writers settle\n"
        "    reload_config(data)\n"
    )
    use_instead = (
        "import time\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "\n"
        "\n"
        "@zk.DataWatch(\"/app/config\")\n"
        "def on_config(data, stat):\n"
        "    def work():\n"
        "        time.sleep(5)  # let the writers settle\n"
        "        reload_config(data)\n"
        "    zk.handler.spawn(work)\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "The fix runs the blocking statement and the rest of its block in a thread started with "
        "`client.handler.spawn(...)` (a single call becomes `client.handler.spawn(func, args...)`; "
        "several statements move into a nested `def work():`). The callback returns at once, so "
        "the moved work now runs concurrently with later callbacks and with the statements after "
        "the enclosing block, and its exceptions are reported by the thread, not by kazoo. A "
        "lambda raw watch or rawlink callback whose blocking call sits inside a larger "
        "expression becomes `lambda e: client.handler.spawn(lambda: <body>)` (kazoo ignores "
        "those callbacks' return value)."
    )
    limits = (
        "Known blocking calls only: time.sleep, subprocess.run/call/check_call/check_output/"
        "getoutput/getstatusoutput, os.system/wait/waitpid, requests.*/httpx.* module functions and "
        "requests.Session methods, urllib.request.urlopen/urlretrieve, http.client connections, "
        "socket.create_connection/getaddrinfo/gethostbyname and socket.connect, smtplib/ftplib "
        "connections, input(), and Thread.join/Event.wait/Condition.wait/Barrier.wait/Popen.wait/"
        "communicate, Lock/RLock/Semaphore.acquire and queue get() called without a timeout on "
        "objects the module visibly constructs (names or self attributes bound only to such "
        "constructions). Synchronous ZooKeeper calls in watch callbacks are not reported (they work "
        "there; see ZK302 for where they hang). `with lock:` is not reported. The scan follows one "
        "call level into functions and methods of the same module. The fix is refused for lambdas "
        "whose blocking call sits inside a larger expression when the callback is a state "
        "listener or a DataWatch/ChildrenWatch function (kazoo reads their return value: True "
        "removes a listener, False stops a recipe, and a spawned body has none), for a lambda "
        "that only sleeps (nothing to hand off), async callbacks, callbacks whose client cannot be named inside "
        "them, moved code that returns/yields/breaks out or binds names used elsewhere in the "
        "callback, and a sleep that ends its block (nothing to hand off)."
    )

    def check(self) -> Iterator[Finding]:
        api = self.api()

        def classify(node, scope):
            if isinstance(node, ast.Call):
                what = api.blocking_call(node, scope)
                if what is not None:
                    return _describe(node), what, None
            return None

        for cb in self.model.callbacks():
            client = self.client_text(cb) or "client"
            for hit in self.callback_hits(cb, classify, self.project_blocking):
                yield self.finding(
                    hit.call,
                    f"{hit.what} in a {cb.kind.value}: {_THREAD[cb.kind]}; hand it to {client}.handler.spawn()",
                    "Run the blocking work in client.handler.spawn()",
                    self.spawn_build(cb, hit, prefer_async=False),
                )


# ---- ZK302 ---------------------------------------------------------------------------------

@register
class DeadlockInCallback(_CallbackRule):
    code = "ZK302"
    name = "deadlock-in-callback"
    summary = "A kazoo call inside a callback waits for the very thread that is running the callback."
    why = (
        "A synchronous client call (`create`, `get`, `exists`, `ensure_path`, `retry`, "
        "`transaction().commit()`, a recipe's blocking call, ...) only queues a request and waits "
        "for the connection thread to read the reply. A state listener (`add_listener`) runs on that "
        "connection thread, so the reply is never read: the call hangs forever, and so does "
        "`stop()` (reproduced: `exists(\"/\")` in a CONNECTED listener). Two more kazoo deadlocks "
        "follow the same pattern: `create`/`ensure_path`/`sync` in a `rawlink` callback complete "
        "through a rawlink on that same completion thread, and `Lock.acquire()`/`Barrier.wait()`/"
        "`Election.run()` without a timeout in a watch callback wait for a watch only that callback "
        "thread can deliver."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.protocol.states import KazooState\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "\n"
        "\n"
        "def on_state(state):\n"
        "    if state == KazooState.CONNECTED:\n"
        "        zk.create(\"/workers/me\", b\"\", ephemeral=True)\n"
        "\n"
        "\n"
        "zk.add_listener(on_state)\n"
        "zk.start()\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.protocol.states import KazooState\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "\n"
        "\n"
        "def on_state(state):\n"
        "    if state == KazooState.CONNECTED:\n"
        "        zk.create_async(\"/workers/me\", b\"\", ephemeral=True)\n"
        "\n"
        "\n"
        "zk.add_listener(on_state)\n"
        "zk.start()\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "A call statement that ends its block and whose result is unused becomes its `_async` form "
        "(the callback no longer waits, and errors are no longer raised in the callback); otherwise "
        "the call and the rest of its block move into a thread started with "
        "`client.handler.spawn(...)`. Either way the work now completes after the callback returns. "
        "A lambda raw watch or rawlink callback whose call sits inside a larger expression runs "
        "that whole expression in `client.handler.spawn(lambda: ...)`."
    )
    limits = (
        "Only calls on the same client the callback is registered on (by the model's client "
        "identity: `self.zk` and a local alias of it count as different) and recipe objects the "
        "module visibly builds from that client. `with lock:` counts as acquire(). The scan follows "
        "one call level into functions and methods of the same module. Calls with a timeout "
        "(`lock.acquire(timeout=5)`, `get_async().get(timeout=5)`) are not reported in watch "
        "callbacks. TreeCache listeners run on their own thread and are not checked. In a listener's "
        "`if state == KazooState.LOST:` branch the call raises at once instead of hanging (the session "
        "is closed): still reported, without a fix (it needs CONNECTED, not another thread). The fix is "
        "refused where ZK301's is (see there), except that an `_async` call needs no client name."
    )

    def check(self) -> Iterator[Finding]:
        api = self.api()
        for cb in self.model.callbacks():
            if cb.client is None:
                continue
            classify = self._classifier(api, cb)
            if classify is None:
                continue
            project = None
            if cb.kind is CallbackKind.STATE_LISTENER:
                # a function of another module handed this client, which calls it synchronously
                project = lambda call, scope, cb=cb: self.project_synchronous(cb, call, scope)  # noqa: E731
            for hit in self.callback_hits(cb, classify, project):
                if cb.kind is CallbackKind.STATE_LISTENER and self._in_lost_branch(cb.function, hit.call):
                    # LOST is delivered after the session is closed: the call raises at once,
                    # and moving it to another thread would not help (it needs CONNECTED).
                    yield self.finding(
                        hit.call,
                        f"{hit.subject} in a state listener's LOST branch fails at once (the session is "
                        "closed: SessionExpiredError/ConnectionClosedError); in other states it would hang",
                    )
                    continue
                yield self.finding(
                    hit.call,
                    self._message(cb, hit),
                    "Run the call off the callback's thread",
                    self.spawn_build(cb, hit, prefer_async=True),
                )

    def _in_lost_branch(self, func: FunctionNode, node: ast.AST) -> bool:
        """Is `node` in the body of ``if <state> == KazooState.LOST:`` (the listener's first parameter)?"""
        if isinstance(func, ast.Lambda):
            return False
        scope = self.scope(func)
        params = func.args.posonlyargs + func.args.args
        skip = 1 if scope is not None and scope.self_name else 0
        if len(params) <= skip:
            return False
        state = params[skip].arg
        parents = self.model.parents()
        child = node
        for ancestor in _ancestors(node, parents, func):
            if isinstance(ancestor, ast.If) and any(child is s for s in ancestor.body):
                test = ancestor.test
                if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is)):
                    sides = [test.left, test.comparators[0]]
                    if any(isinstance(x, ast.Name) and x.id == state for x in sides) and any(
                        self._is_lost(x) for x in sides
                    ):
                        return True
            child = ancestor
        return False

    def _is_lost(self, expr: ast.AST) -> bool:
        if isinstance(expr, ast.Constant):
            return expr.value == "LOST"
        return self.model.qualname(expr) == "kazoo.protocol.states.KazooState.LOST"

    @staticmethod
    def _message(cb: Callback, hit: Hit) -> str:
        if cb.kind is CallbackKind.STATE_LISTENER:
            return (f"{hit.subject} in a state listener hangs forever: it waits for a reply only the "
                    "connection thread can read, and that thread is running the listener")
        if cb.kind is CallbackKind.COMPLETION:
            return (f"{hit.subject} in a rawlink callback completes through a callback on this same "
                    "completion thread: it hangs forever")
        return (f"{hit.subject} in a {cb.kind.value} waits for a watch that only this callback thread "
                "can deliver: it never wakes")

    def _classifier(self, api: Api, cb: Callback):
        key = cb.client

        def same(other: Optional[ClientKey]) -> bool:
            return other is not None and other == key

        if cb.kind is CallbackKind.STATE_LISTENER:
            def classify(node, scope):
                if isinstance(node, ast.Call):
                    op = api.sync_client_op(node, scope)
                    if op is not None and same(op[0]):
                        method = op[1] if op[1] in kazoo_api.SYNC_CLIENT_OPS else None
                        return _describe(node), "waits", method
                    recipe = api.recipe_sync_call(node, scope)
                    if recipe is not None and same(recipe[2]):
                        return _describe(node), "waits", None
                elif isinstance(node, (ast.With, ast.AsyncWith)):
                    for item in node.items:
                        lock = api.recipe_context(item.context_expr, scope)
                        if lock is not None and same(lock[1]):
                            return f"`with {ast.unparse(item.context_expr)}:`", "waits", None
                return None
            return classify
        if cb.kind is CallbackKind.COMPLETION:
            def classify(node, scope):
                if isinstance(node, ast.Call):
                    op = api.client_op(node, scope)
                    if op is not None and same(op[0]) and op[1] in kazoo_api.COMPLETION_CHAINED_OPS:
                        return _describe(node), "waits", op[1]
                return None
            return classify
        if cb.kind in _WATCH_KINDS:
            def classify(node, scope):
                if isinstance(node, ast.Call):
                    recipe = api.recipe_watch_wait(node, scope)
                    if recipe is not None and same(recipe[2]):
                        return _describe(node) + " with no timeout", "waits", None
                elif isinstance(node, (ast.With, ast.AsyncWith)):
                    for item in node.items:
                        lock = api.recipe_context(item.context_expr, scope)
                        if lock is not None and same(lock[1]):
                            return f"`with {ast.unparse(item.context_expr)}:`", "waits", None
                return None
            return classify
        return None


# ---- ZK303 ---------------------------------------------------------------------------------

@register
class LifecycleCallInCallback(_CallbackRule):
    code = "ZK303"
    name = "lifecycle-call-in-callback"
    summary = "stop(), close() or restart() of a client inside one of its own callbacks."
    why = (
        "`stop()` joins kazoo's callback and completion threads and waits for the connection "
        "thread to close the session. Called from a watch, DataWatch/ChildrenWatch or rawlink "
        "callback it runs on one of those threads and raises `RuntimeError('cannot join current "
        "thread')`; in a state listener (the connection thread) it stalls, then fails the same way. "
        "`restart()` is stop()+start() and `close()` needs a stopped client. Signal another thread "
        "(an Event, a queue, `client.handler.spawn`) to shut the client down."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.protocol.states import KazooState\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "\n"
        "\n"
        "def on_state(state):\n"
        "    if state == KazooState.LOST:\n"
        "        zk.stop()  # runs on the connection thread: stalls, then fails\n"
        "\n"
        "\n"
        "zk.add_listener(on_state)\n"
        "zk.start()\n"
    )
    use_instead = (
        "import threading\n"
        "\n"
        "from kazoo.client import KazooClient\n"
        "from kazoo.protocol.states import KazooState\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "lost = threading.Event()\n"
        "\n"
        "\n"
        "def on_state(state):\n"
        "    if state == KazooState.LOST:\n"
        "        lost.set()  # only signal: the main thread shuts the client down\n"
        "\n"
        "\n"
        "zk.add_listener(on_state)\n"
        "zk.start()\n"
        "lost.wait()\n"
        "zk.stop()\n"
        "zk.close()\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "The fix moves the lifecycle call off kazoo's threads, with ZK301's machinery: a call "
        "that ends its block becomes `client.handler.spawn(client.stop)` (a new thread, not one of "
        "kazoo's, so stop() can join them), and a call followed by more statements moves with them "
        "into a nested `def work():` that is spawned (`zk.stop(); zk.close()` stay in order). The "
        "callback now returns before the client is stopped, and whatever followed the call in its "
        "block runs on that thread after it; that is the change in threading that makes it unsafe. "
        "Refused where ZK301's fix is (see there)."
    )
    limits = (
        "Only calls on the client the callback is registered on (by the model's client identity). "
        "Follows one call level into functions and methods of the same module. TreeCache "
        "listeners (their own thread) are not checked. The fix is refused for lambdas other than "
        "a single call, async callbacks, callbacks whose client cannot be named inside them, and "
        "moved code that returns/yields/breaks out or binds names used elsewhere in the callback."
    )

    def check(self) -> Iterator[Finding]:
        api = self.api()
        for cb in self.model.callbacks():
            if cb.client is None or cb.kind is CallbackKind.TREE_CACHE:
                continue
            key = cb.client

            def classify(node, scope, key=key):
                if isinstance(node, ast.Call):
                    op = api.client_op(node, scope)
                    if op is not None and op[0] == key and op[1] in kazoo_api.LIFECYCLE_OPS:
                        return _describe(node), "joins", op[1]
                return None

            for hit in self.callback_hits(cb, classify):
                yield self.finding(
                    hit.call, self._message(cb, hit), "Run it in client.handler.spawn(), off kazoo's threads",
                    self.spawn_build(cb, hit, prefer_async=False),
                )

    @staticmethod
    def _message(cb: Callback, hit: Hit) -> str:
        method = hit.method or ""
        kind = cb.kind.value
        if method == "close":
            why = "needs a stopped client, and stop() cannot run on kazoo's own thread"
        elif cb.kind is CallbackKind.STATE_LISTENER:
            why = "waits for the connection thread running this listener: it stalls, then fails with RuntimeError"
        else:
            why = "joins the very thread it runs on: RuntimeError('cannot join current thread')"
        return f"{hit.subject} in a {kind} {why}; signal another thread to stop the client"


# ---- ZK304 ---------------------------------------------------------------------------------

# How many calls deep a re-arm is looked for (a miss is a false alarm, so deeper than ZK301/302).
_REARM_DEPTH = 3
_SIGNAL_METHODS = {"set", "put", "put_nowait", "notify", "notify_all", "release", "call_soon_threadsafe"}
_LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
_RECIPE_FOR = {"get": "DataWatch", "exists": "DataWatch", "get_children": "ChildrenWatch"}


@register
class OneShotWatch(_CallbackRule):
    code = "ZK304"
    name = "one-shot-watch"
    summary = "A raw watch= callback that never re-arms, or a ChildrenWatch that dies at the first disconnect."
    why = (
        "ZooKeeper watches fire once. A raw `watch=` callback of get/exists/get_children that does "
        "not register itself again sees only the first change; worse, on every disconnect "
        "(SUSPENDED as well as LOST) kazoo fires all raw watches once with `EventType.NONE` and "
        "drops them for good (KAZOO.md §4, §7), so after a network blip the process silently stops "
        "following the node. kazoo's DataWatch/ChildrenWatch recipes re-arm after every event and "
        "every reconnect. `ChildrenWatch(..., allow_session_lost=False)` gives that up and dies "
        "at the first disconnect."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "\n"
        "\n"
        "def on_members(event):\n"
        "    members = zk.get_children(\"/members\")\n"
        "    update_pool(members)\n"
        "\n"
        "\n"
        "zk.get_children(\"/members\", watch=on_members)\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "\n"
        "\n"
        "def on_members(members):\n"
        "    update_pool(members)\n"
        "\n"
        "\n"
        "zk.ChildrenWatch(\"/members\", on_members)\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "The recipe calls the function at once when it is registered (the raw watch did not), "
        "again after every change and every reconnect, and with the node's data (DataWatch: "
        "`func(data, stat)`, None/None while the node is missing: the fix starts the function with "
        "`if stat is None: return`, where the re-read used to raise NoNodeError) or children (ChildrenWatch: "
        "`func(children)`; a missing path stops it) instead of the event. Registration no longer "
        "raises NoNodeError. For `allow_session_lost=False` the fix drops the argument."
    )
    limits = (
        "Silent when the callback re-arms in any way the analysis can see: it names itself (e.g. "
        "`watch=self.on_change` inside it), calls the function that registered it, or same-"
        "module functions (up to three calls deep) that do either; when the registration runs in a "
        "loop, or in a function called from a loop; when the callback "
        "only signals a waiter (`event.set()`, `queue.put()`, `cond.notify()`, setting an attribute "
        "to a constant), which re-arms itself; and when it calls a `self.` method the module does not "
        "define (it may re-arm). Callbacks the model cannot resolve are not checked. The fix "
        "rewrites only this shape: a registration statement `c.get|exists|get_children(path, "
        "watch=f)` with the result unused, `path` a string literal, module-level name or `self.` "
        "attribute, and `f` a plain function or method taking only the event, registered nowhere "
        "else, that starts by re-reading the same path on the same client (`data, stat = "
        "c.get(path)` / `children = c.get_children(path)`), never uses the event, and returns no "
        "value; the re-read becomes the recipe's arguments (also at module level). Other shapes "
        "are reported without a fix, for these reasons: a callback that uses its event (its type "
        "or path) has no faithful recipe form, since the recipes pass data or children, call the "
        "function at registration and after a reconnect with no event, and merge changes; a "
        "registration whose result the code uses (`data, stat = zk.get(p, watch=f)`) would "
        "need the recipe's first call to feed that code; a lambda cannot start with a re-read."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        for site, key, method in model.client_calls():
            call = site.node
            if method in kazoo_api.WATCH_METHODS:
                watch = argument(call, kazoo_api.WATCH_METHODS[method], "watch")
                if watch is None:
                    continue
                func = model.resolve_function(watch, site.scope)
                if func is None or isinstance(func, ast.AsyncFunctionDef):
                    continue
                if self._rearms(func, site):
                    continue
                recipe = "ChildrenWatch" if method.startswith("get_children") else "DataWatch"
                name = getattr(func, "name", "the lambda")
                yield self.finding(
                    watch,
                    f"one-shot watch: {name} sees only the first change, and a disconnect fires it with "
                    f"EventType.NONE and drops it for good; use {ast.unparse(call.func.value)}.{recipe}(path, func)",
                    f"Use the {recipe} recipe",
                    self._recipe_builder(site, key, method, func, watch),
                )
            elif method == "ChildrenWatch":
                yield from self._session_lost(call, 2)
        for site in calls_to(model, ["kazoo.recipe.watchers.ChildrenWatch"]):
            if site.node.args and model.is_client_expr(site.node.args[0], site.scope):
                yield from self._session_lost(site.node, 3)

    # -- allow_session_lost=False -------------------------------------------------------------

    def _session_lost(self, call: ast.Call, position: int) -> Iterator[Finding]:
        kw = keyword(call, "allow_session_lost")
        node = kw.value if kw is not None else (
            call.args[position] if len(call.args) > position and not any(
                isinstance(a, ast.Starred) for a in call.args[:position + 1]) else None
        )
        if not (isinstance(node, ast.Constant) and node.value is False):
            return
        yield self.finding(
            kw if kw is not None else node,
            "ChildrenWatch(allow_session_lost=False) stops for good at the first disconnect and never "
            "re-arms; keep the default (True)",
            "Drop allow_session_lost=False",
            lambda source, call=call, kw=kw, node=node: self._session_lost_fix(source, call, kw, node),
        )

    def _session_lost_fix(self, source, call, kw, node) -> List[Edit]:
        if kw is None:
            start, end = source.node_span(node)
            index = next(i for i, arg in enumerate(call.args) if arg is node)
            if index == len(call.args) - 1 and not call.keywords:
                # the last argument: drop it with the separator before it
                return [Edit(source.node_span(call.args[index - 1])[1], end, "")]
            return [Edit(start, end, "True")]
        from zklint import cst_helpers
        from zklint.fixer import expression_edit

        return [expression_edit(source, call, lambda c: cst_helpers.remove_keyword(c, "allow_session_lost"))]

    # -- does the callback re-arm? ---------------------------------------------------------------

    def _rearms(self, func: FunctionNode, site) -> bool:
        model = self.model
        registering = site.scope.node if site.scope.kind == "function" else None
        # the registration repeats in a loop of its own function
        parents = model.parents()
        for ancestor in _ancestors(site.node, parents, registering if registering is not None else model.tree):
            if isinstance(ancestor, (ast.For, ast.AsyncFor, ast.While)):
                return True
        # ... or its function is called in a loop (``while True: poll()``)
        if registering is not None and self._called_in_loop(registering):
            return True
        if self._only_signals(func):
            return True
        scope = self.scope(func)
        if scope is None:
            return True

        def refers(target: FunctionNode, target_scope: Scope, depth: int) -> bool:
            for node, node_scope in self._walk_scoped(target, target_scope):
                if (
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and model.resolve_function(node.func, node_scope) is None
                ):
                    if self._unknown_self_method(node.func, node_scope):
                        return True  # an inherited or assigned method: it may re-arm, stay silent
                if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(getattr(node, "ctx", None), ast.Load):
                    resolved = model.resolve_function(node, node_scope)
                    if resolved is func or (registering is not None and resolved is registering):
                        return True
                    if depth < _REARM_DEPTH and isinstance(resolved, _DEF_TYPES) and resolved not in visited:
                        visited.add(resolved)
                        inner_scope = self.scope(resolved)
                        if inner_scope is not None and refers(resolved, inner_scope, depth + 1):
                            return True
            return False

        visited = {func}

        result = refers(func, scope, 0)
        refers = None  # the closure refers to itself: a cycle that would keep the model alive
        return result

    def _called_in_loop(self, func: ast.AST) -> bool:
        """Is `func` called (directly, same module) from inside a for/while loop?"""
        model = self.model
        parents = model.parents()
        for site in _Callers.of(model).calls_of(func):
            for ancestor in _ancestors(site.node, parents, model.tree):
                if isinstance(ancestor, (ast.For, ast.AsyncFor, ast.While)):
                    return True
                if isinstance(ancestor, _NESTED):
                    break
        return False

    def _unknown_self_method(self, node: ast.Attribute, scope: Scope) -> bool:
        """``self.x`` where x is not defined in the module's class (inherited, assigned): unknown."""
        current: Optional[Scope] = scope
        while current is not None and current.kind == "function":
            if current.self_name == node.value.id:
                cls = current.enclosing_class
                return cls is not None and node.attr not in cls.bindings
            if node.value.id in current.bindings:
                return False
            current = current.parent
        return False

    def _walk_scoped(self, func: FunctionNode, scope: Scope) -> Iterator[Tuple[ast.AST, Scope]]:
        roots = [func.body] if isinstance(func, ast.Lambda) else list(func.body)
        stack = [(root, scope) for root in roots]
        while stack:
            node, node_scope = stack.pop()
            yield node, node_scope
            inner = self.model.scopes.get(node, node_scope) if isinstance(node, _NESTED) else node_scope
            stack.extend((child, inner) for child in child_nodes(node))

    @staticmethod
    def _only_signals(func: FunctionNode) -> bool:
        """The callback only wakes a waiter: sets an event, puts to a queue, notifies, sets a flag
        (also under an ``if`` on the event), besides logging, asserting and raising."""
        body = [ast.Expr(value=func.body)] if isinstance(func, ast.Lambda) else list(func.body)
        found = [False]

        def ok(stmts) -> bool:
            for stmt in stmts:
                if isinstance(stmt, (ast.Pass, ast.Assert, ast.Raise)):
                    continue
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    continue  # docstring
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                    func_expr = stmt.value.func
                    if isinstance(func_expr, ast.Attribute) and func_expr.attr in _SIGNAL_METHODS:
                        found[0] = True
                        continue
                    if isinstance(func_expr, ast.Attribute) and func_expr.attr in _LOG_METHODS:
                        continue
                    if isinstance(func_expr, ast.Name) and func_expr.id == "print":
                        continue
                    return False
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant) and all(
                    isinstance(t, (ast.Attribute, ast.Subscript)) for t in stmt.targets
                ):
                    found[0] = True
                    continue
                if isinstance(stmt, ast.If) and ok(stmt.body) and ok(stmt.orelse):
                    continue
                return False
            return True

        result = ok(body) and found[0]
        ok = None  # the closure refers to itself: a cycle the collector would have to find
        return result

    # -- the recipe fix -------------------------------------------------------------------------

    def _recipe_builder(self, site, key: ClientKey, method: str, func: FunctionNode, watch: ast.AST):
        try:
            plan = self._recipe_plan(site, key, method, func, watch)
        except FixError:
            return None
        return lambda source: self._recipe_edits(source, *plan)

    def _recipe_plan(self, site, key: ClientKey, method: str, func: FunctionNode, watch: ast.AST) -> tuple:
        model = self.model
        call = site.node
        recipe = _RECIPE_FOR.get(method)
        if recipe is None:
            raise FixError("only get/exists/get_children registrations")
        if not isinstance(func, ast.FunctionDef) or func.decorator_list:
            raise FixError("the callback is not a plain function")
        if isinstance(watch, ast.Call):
            raise FixError("a partial")
        # the registration: an expression statement c.m(path, watch=f) with nothing else
        if len(call.args) + len(call.keywords) != 2 or (call.keywords and call.keywords[0].arg != "watch") \
                or any(isinstance(a, ast.Starred) for a in call.args) or not call.args:
            raise FixError("the registration passes more than the path and the watch")
        path = call.args[0]
        parents = model.parents()
        statement = parents.get(call)
        if not isinstance(statement, ast.Expr):
            raise FixError("the registration's result is used")
        scope = self.scope(func)
        f_scope_self = scope.self_name if scope is not None else None
        args = func.args
        params = args.posonlyargs + args.args
        skip = 1 if f_scope_self else 0
        if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or len(params) != skip + 1:
            raise FixError("the callback does not take just the event")
        event = params[skip].arg
        if self._references(func) != 1:
            raise FixError("the callback is used elsewhere")
        body = list(func.body)
        first = 1 if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str) else 0
        if len(body) <= first + 1:
            raise FixError("nothing would be left of the callback")
        reread = body[first]
        names = self._reread_names(reread, recipe, path, site.scope, scope, key)
        if names is None:
            raise FixError("the callback does not start by re-reading the path")
        if len(set(names)) != len(names) or (f_scope_self and f_scope_self in names):
            raise FixError("parameter names would clash")
        for node in walk(func):
            if isinstance(node, ast.Name) and node.id == event:
                raise FixError("the callback uses its event")
            if isinstance(node, (ast.Global, ast.Nonlocal)) and set(node.names) & set(names):
                raise FixError("the re-read names are globals")
        for node in own_descendants(func):
            if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None
            ):
                raise FixError("the callback returns a value (False would stop the recipe)")
        if self._inside(func, call):
            raise FixError("registration inside the callback")
        new_params = ([f_scope_self] if f_scope_self else []) + names
        return call, recipe, path, watch, func, new_params, first

    def _recipe_edits(self, source, call, recipe, path, watch, func, new_params, first) -> List[Edit]:
        # edit 1: the registration
        client_text = source.segment(call.func.value)
        new_call = f"{client_text}.{recipe}({source.segment(path)}, {source.segment(watch)})"
        start, end = source.node_span(call)
        edits = [Edit(start, end, new_call)]
        # edit 2: the callback's parameters and its re-read

        def transform(stmts: List[cst.BaseStatement]) -> List[cst.BaseStatement]:
            definition = stmts[0]
            if not isinstance(definition, cst.FunctionDef):
                raise FixError("unexpected callback shape")
            old = list(definition.params.params)
            new = []
            for index, name in enumerate(new_params):
                if index < len(old) and old[index].name.value == name:
                    new.append(old[index])
                else:
                    template = old[min(index, len(old) - 1)]
                    new.append(template.with_changes(name=cst.Name(name), annotation=None))
            for index, param in enumerate(new):
                if index < len(new) - 1:
                    comma = param.comma if isinstance(param.comma, cst.Comma) else cst.Comma(
                        whitespace_after=cst.SimpleWhitespace(" "))
                    new[index] = param.with_changes(comma=comma)
                else:
                    new[index] = param.with_changes(comma=old[-1].comma)
            block = definition.body
            statements = list(block.body)
            removed = statements[first]
            following = statements[first + 1]
            # blank lines above the re-read stay; the comments on it go with it
            kept = []
            for line in removed.leading_lines:
                if line.comment is not None:
                    break
                kept.append(line)
            if recipe == "DataWatch":
                # DataWatch calls func(None, None) while the node is missing, where the re-read raised
                # NoNodeError before doing anything: keep doing nothing then.
                missing = new_params[-1] if new_params[-1] != "_" else new_params[-2]
                guard = parse_statement(source, f"if {missing} is None:\n    return")
                guard = guard.with_changes(
                    body=guard.body.with_changes(indent=source.indent_unit), leading_lines=kept)
                statements[first] = guard
            else:
                statements[first + 1] = following.with_changes(leading_lines=kept + list(following.leading_lines))
                del statements[first]
            return [definition.with_changes(
                params=definition.params.with_changes(params=new),
                body=block.with_changes(body=statements),
            )]

        edits.append(statements_edit(source, [func], transform))
        return sorted(edits, key=lambda e: e.start)

    def _reread_names(self, stmt, recipe, path, reg_scope, f_scope, key) -> Optional[List[str]]:
        if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1 or not isinstance(stmt.value, ast.Call):
            return None
        call = stmt.value
        target = stmt.targets[0]
        expected = "get" if recipe == "DataWatch" else "get_children"
        if not isinstance(call.func, ast.Attribute) or call.func.attr != expected:
            return None
        if len(call.args) != 1 or call.keywords:
            return None
        if f_scope is None or self.model.client_key(call.func.value, f_scope) != key:
            return None
        if not self._same_path(path, reg_scope, call.args[0], f_scope):
            return None
        if recipe == "DataWatch":
            names = target.elts if isinstance(target, ast.Tuple) else []
            if len(names) == 2 and all(isinstance(e, ast.Name) for e in names):
                return [e.id for e in target.elts]
            return None
        if isinstance(target, ast.Name):
            return [target.id]
        return None

    def _same_path(self, a: ast.AST, a_scope: Scope, b: ast.AST, b_scope: Scope) -> bool:
        model = self.model
        if ast.dump(a) != ast.dump(b):
            return False
        if isinstance(a, ast.Constant):
            return isinstance(a.value, str)
        if isinstance(a, ast.Name):
            owner = model.lookup(a.id, a_scope)
            return owner is model.module_scope and model.lookup(b.id, b_scope) is owner \
                and len(owner.bindings.get(a.id, ())) == 1
        if isinstance(a, ast.Attribute) and isinstance(a.value, ast.Name):
            cls_a = self.model.class_for_self(a.value.id, a_scope)
            return cls_a is not None and cls_a is self.model.class_for_self(b.value.id, b_scope)
        return False

    def _references(self, func: FunctionNode) -> int:
        model = self.model
        count = 0
        for node, scope in self._walk_scoped_module():
            if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(getattr(node, "ctx", None), ast.Load):
                if model.resolve_function(node, scope) is func:
                    count += 1
        return count

    def _walk_scoped_module(self) -> Iterator[Tuple[ast.AST, Scope]]:
        model = self.model
        stack = [(child, model.module_scope) for child in model.tree.body]
        while stack:
            node, scope = stack.pop()
            yield node, scope
            inner = model.scopes.get(node, scope) if isinstance(node, _NESTED) else scope
            stack.extend((child, inner) for child in child_nodes(node))

    @staticmethod
    def _inside(func: ast.AST, node: ast.AST) -> bool:
        return any(n is node for n in walk(func))


# ---- ZK305 ---------------------------------------------------------------------------------

_WATCH_RECIPES = {"DataWatch", "ChildrenWatch"}
_WATCH_RECIPE_CLASSES = {"kazoo.recipe.watchers.DataWatch": "DataWatch",
                         "kazoo.recipe.watchers.ChildrenWatch": "ChildrenWatch"}
# Objects whose decorated functions run once per request or task.
_REQUEST_APPS = frozenset({
    "flask.Flask", "flask.Blueprint", "fastapi.FastAPI", "fastapi.APIRouter", "quart.Quart",
    "quart.Blueprint", "sanic.Sanic", "bottle.Bottle", "celery.Celery",
})
_REQUEST_DECORATORS = frozenset({
    "route", "get", "post", "put", "patch", "delete", "head", "options", "api_route", "websocket", "task",
})
_MEMOISERS = frozenset({"functools.lru_cache", "functools.cache"})
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
# Callbacks kazoo runs again and again. A raw watch= callback fires once per registration and a
# rawlink callback once per result: a watch built there is built once (unless they are re-armed).
_RECURRING_CALLBACKS = frozenset({
    CallbackKind.STATE_LISTENER, CallbackKind.DATA_WATCH, CallbackKind.CHILDREN_WATCH, CallbackKind.TREE_CACHE,
})
# How many calls up a per-event or per-request caller is looked for.
_REBUILD_DEPTH = 3


@register
class WatchRecipeRebuilt(_CallbackRule):
    code = "ZK305"
    name = "watch-recipe-rebuilt"
    summary = (
        "A DataWatch/ChildrenWatch built again and again (in a loop, a callback or a request handler) "
        "with no guard."
    )
    why = (
        "A DataWatch or ChildrenWatch is not a subscription that replaces the previous one: each "
        "construction registers one more watcher, which re-arms itself after every event and every "
        "reconnect and lives until its function returns False. Built inside a loop, inside another "
        "watch or listener callback (a DataWatch per child inside a ChildrenWatch function is the "
        "classic), or in a function that runs per request, the watchers pile up: after N rebuilds one "
        "change runs the function N times, every watcher re-reads the node on each event, and "
        "watchers and memory leak for the life of the client (kazoo issues 561, 542, 543). Build each "
        "watch once, and remember which paths are already watched."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "\n"
        "\n"
        "def on_members(children):\n"
        "    for child in children:\n"
        "        zk.DataWatch(\"/members/\" + child, on_member_data)\n"
        "\n"
        "\n"
        "def on_member_data(data, stat):\n"
        "    print(data)\n"
        "\n"
        "\n"
        "zk.ChildrenWatch(\"/members\", on_members)\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "zk = KazooClient(hosts=\"zk1:2181,zk2:2181,zk3:2181\")\n"
        "zk.start()\n"
        "watched = set()\n"
        "\n"
        "\n"
        "def on_members(children):\n"
        "    for child in children:\n"
        "        if child not in watched:\n"
        "            watched.add(child)\n"
        "            zk.DataWatch(\"/members/\" + child, on_member_data)\n"
        "\n"
        "\n"
        "def on_member_data(data, stat):\n"
        "    print(data)\n"
        "\n"
        "\n"
        "zk.ChildrenWatch(\"/members\", on_members)\n"
    )
    fix_safety = None
    limits = (
        "Builds found: `client.DataWatch/ChildrenWatch(...)` (call and decorator forms) and "
        "`kazoo.recipe.watchers.DataWatch/ChildrenWatch(client, ...)` on a client the model knows. "
        "Repeated means: in a `for`/`while` loop with no `break`/`return` whose passes do not change "
        "the path or the function (a loop over distinct paths builds one watch per path: fine unless "
        "the loop itself runs again), unless the watch's function can return False (a watcher stopped before the "
        "next pass); in a callback kazoo runs on every event (a DataWatch/ChildrenWatch function, a "
        "state listener, a TreeCache listener; not a raw `watch=` or rawlink callback, which fire once "
        "per registration); in a request handler (a route decorator "
        "of a Flask/Blueprint/FastAPI/APIRouter/Quart/Sanic/Bottle object, a Celery task); or in a "
        "function a same-module caller runs in one of those ways, up to three calls up. Any guard "
        "silences it: an enclosing `if` (or an earlier `if ...: return/continue`) about state the "
        "function does not get as an argument (`self.`, a global): membership in a container "
        "(`path not in self._watched`), a comparison with None (`self._watch is None`), or its "
        "truth (`if not self._watching:`); `if data is None:` on the watch's own argument is no "
        "guard; a loop over a set difference "
        "(`set(children) - self.watched`); an `lru_cache`/`cache` decorator. A guard that does "
        "not work (tests a set nobody fills) is not checked. Other per-request frameworks "
        "(Django views, class-based handlers), objects built per event (an `__init__` that builds "
        "the watch) and callers in other modules are not seen."
    )

    def check(self) -> Iterator[Finding]:
        for call, scope, recipe, path, func_expr, func in self._builds():
            if path is None:
                continue
            # A loop whose passes change the path or the function builds other watches, not the same one.
            names = {n.id for e in (path, func_expr) if e is not None for n in walk(e) if isinstance(n, ast.Name)}
            reason = self._why_repeated(call, scope, names, func, 0)
            if reason is None:
                continue
            yield self.finding(call, (
                f"{recipe} built {reason}, with no guard that remembers the watched paths: each build "
                "adds one more watcher that lives until its function returns False, so one change runs "
                "the function once per build and watchers leak; build it once per path"
            ))

    def _builds(self) -> Iterator[tuple]:
        """(call, scope, recipe, path, func argument, watch function) for every DataWatch/ChildrenWatch
        built; the function argument is None in the decorator form, whose function is the def."""
        model = self.model
        decorated = {}
        for node in model.scopes:
            if isinstance(node, _DEF_TYPES):
                for deco in node.decorator_list:
                    decorated[id(deco)] = node

        def build(call: ast.Call, scope: Scope, recipe: str, position: int) -> tuple:
            func_expr = argument(call, position, "func")
            if func_expr is None:
                func = decorated.get(id(call))  # @zk.DataWatch(path) over a def
            else:
                func = model.resolve_function(func_expr, scope)
            return call, scope, recipe, argument(call, position - 1, "path"), func_expr, func

        for site, _key, method in model.client_calls():
            if method in _WATCH_RECIPES:
                yield build(site.node, site.scope, method, 1)
        for site in calls_to(model, _WATCH_RECIPE_CLASSES):
            call = site.node
            recipe = _WATCH_RECIPE_CLASSES[model.qualname(call.func)]
            if call.args and model.is_client_expr(call.args[0], site.scope):
                yield build(call, site.scope, recipe, 2)

    # -- is the build repeated? --------------------------------------------------------------

    def _flow(self, scope: Scope) -> Optional[Flow]:
        if isinstance(scope.node, ast.Lambda) or scope.kind == "class":
            return None
        flows = getattr(self, "_flows", None)
        if flows is None:
            flows = self._flows = {}
        flow = flows.get(id(scope.node))
        if flow is None:
            flow = flows[id(scope.node)] = Flow(scope.node, self.model.parents())
        return flow

    def _why_repeated(self, node: ast.AST, scope: Scope, names: Set[str], func: Optional[FunctionNode],
                      depth: int) -> Optional[str]:
        """Why `node` (a build, or a call that leads to one) runs again and again; None: it may not."""
        flow = self._flow(scope)
        if flow is None or not flow.contains(node) or self._guarded(flow, node, scope):
            return None
        for loop in reversed(flow.enclosing_loops(node)):
            if self._repeats(loop, names) and not (func is not None and depth == 0 and _may_return_false(func)):
                kind = "while" if isinstance(loop, ast.While) else "for"
                return f"in a {kind} loop (line {loop.lineno}) that builds it again on every pass"
        if scope.kind != "function":
            return None
        function = scope.node
        fname = getattr(function, "name", "a lambda")
        if any(self.model.qualname(d.func if isinstance(d, ast.Call) else d) in _MEMOISERS
               for d in getattr(function, "decorator_list", ())):
            return None
        callback = self._callback_kinds().get(id(function))
        if callback in _RECURRING_CALLBACKS:
            return f"in {fname}, a {callback.value} that kazoo runs again on every event"
        decorator = self._request_decorator(function)
        if decorator is not None:
            return f"in {fname}, a request handler (@{decorator}) that runs on every request"
        if depth >= _REBUILD_DEPTH:
            return None
        for site in self._calls_of(function):
            args = list(site.node.args) + [k.value for k in site.node.keywords]
            arg_names = {n.id for a in args for n in walk(a) if isinstance(n, ast.Name)}
            caller = self._why_repeated(site.node, site.scope, arg_names, None, depth + 1)
            if caller is not None:
                return f"in {fname}, called on line {site.node.lineno} {caller}"
        return None

    def _repeats(self, loop: ast.stmt, names: Set[str]) -> bool:
        """Does every pass of `loop` run again with the same path (no break/return, path unchanged)?"""
        bound: Set[str] = set()
        if isinstance(loop, (ast.For, ast.AsyncFor)):
            bound |= {n.id for n in walk(loop.target) if isinstance(n, ast.Name)}
        for stmt in loop.body:
            for sub in own_descendants(stmt):
                if isinstance(sub, ast.Return):
                    return False
                if isinstance(sub, ast.Break) and self._loop_of_break(sub, loop):
                    return False
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    bound.add(sub.id)
        return not (names & bound)

    def _loop_of_break(self, node: ast.Break, loop: ast.stmt) -> bool:
        parents = self.model.parents()
        current = parents.get(node)
        while current is not None and not isinstance(current, _LOOPS):
            current = parents.get(current)
        return current is loop

    def _guarded(self, flow, node: ast.AST, scope: Scope) -> bool:
        """Is `node` under a test that remembers what is already watched?"""
        params = set(scope.params) - {scope.self_name}
        blocks = flow.blocks(node)
        for block in blocks:
            owner = block.owner
            if isinstance(owner, ast.If) and block.field == "body" and _remembers(owner.test, params):
                return True
            if isinstance(owner, ast.If) and block.field == "orelse" and _remembers(owner.test, params):
                return True
            if isinstance(owner, (ast.For, ast.AsyncFor)) and block.field == "body" and _new_items_only(owner.iter):
                return True
            sibling = flow.sibling_in(block, node)
            if sibling is None:
                continue
            for earlier in block.stmts[:block.index(sibling)]:
                if isinstance(earlier, ast.If) and _remembers(earlier.test, params) and (
                    exits(earlier.body) or exits(earlier.orelse)
                ):
                    return True
        return False

    def _callback_kinds(self) -> Dict[int, CallbackKind]:
        kinds = getattr(self, "_kinds", None)
        if kinds is None:
            kinds = self._kinds = {}
            for cb in self.model.callbacks():
                kinds.setdefault(id(cb.function), cb.kind)
        return kinds

    def _request_decorator(self, function: ast.AST) -> Optional[str]:
        model = self.model
        for deco in getattr(function, "decorator_list", ()):
            target = deco.func if isinstance(deco, ast.Call) else deco
            if model.qualname(target) == "celery.shared_task":
                return "shared_task"
            if isinstance(target, ast.Attribute) and target.attr in _REQUEST_DECORATORS:
                owner = target.value
                values = model.constructions(owner, model.module_scope) if isinstance(owner, ast.Name) else None
                if values and all(model.qualname(call.func) in _REQUEST_APPS for call, _ in values):
                    return ast.unparse(target)
        return None

    def _calls_of(self, function: ast.AST) -> list:
        return [site for site in _Callers.of(self.model).calls_of(function)
                if isinstance(site.node.func, (ast.Name, ast.Attribute))]


class _Callers:
    """The module's calls by the function of the module they reach, found on demand.

    ``f()`` and ``self.f()`` reach only a def bound under the name ``f`` (a name bound to a
    lambda reaches the lambda), so for a def only the calls of that name, and the few whose
    callee is something else (a lambda, ``functools.partial(f, ...)``), are resolved.
    Kept on the model (ZK304 and ZK305 ask).
    """

    def __init__(self, model) -> None:
        self.model = model
        self._found: Dict[int, List[CallSite]] = {}

    @classmethod
    def of(cls, model) -> "_Callers":
        return model.shared("_zk3_callers", lambda: cls(model))

    def calls_of(self, function: ast.AST) -> List[CallSite]:
        """Every call that resolves to `function`, in `model.calls` order."""
        found = self._found.get(id(function))
        if found is None:
            model = self.model
            if isinstance(function, _DEF_TYPES):
                candidates = CallIndex.of(model).calls(names=[function.name], others=True)
            else:
                candidates = model.calls
            found = self._found[id(function)] = [
                site for site in candidates if model.resolve_function(site.node.func, site.scope) is function
            ]
        return found


def _remembers(test: ast.AST, params: Set[str]) -> bool:
    """A test that looks up remembered state (not only the function's own arguments):
    membership in a container, a comparison with None, or a variable's truth."""
    if isinstance(test, ast.BoolOp):
        return any(_remembers(value, params) for value in test.values)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _remembers(test.operand, params)
    if isinstance(test, ast.Compare):
        left = test.left
        for op, right in zip(test.ops, test.comparators):
            if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, _CONTAINER_EXPRS) and _stateful(right, params):
                return True
            if isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq)):
                for side, other in ((left, right), (right, left)):
                    if isinstance(other, ast.Constant) and other.value is None and _stateful(side, params):
                        return True
            left = right
        return False
    if isinstance(test, ast.Call):
        return isinstance(test.func, ast.Name) and test.func.id == "hasattr" and _stateful(test, params)
    return isinstance(test, (ast.Name, ast.Attribute, ast.Subscript)) and _stateful(test, params)


_CONTAINER_EXPRS = (ast.Name, ast.Attribute, ast.Subscript, ast.Call)


def _stateful(expr: ast.AST, params: Set[str]) -> bool:
    """Does `expr` read something besides the function's arguments (self's attributes, globals)?"""
    return any(isinstance(node, ast.Name) and node.id not in params for node in walk(expr))


def _new_items_only(iterable: ast.AST) -> bool:
    """``set(children) - self.watched`` / ``.difference(...)``: only what is not watched yet."""
    for node in walk(iterable):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "difference":
            return True
    return False


def _may_return_false(func: FunctionNode) -> bool:
    """Can the watch function stop its watcher (``return False``)?"""
    return any(
        isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and node.value.value is False
        for node in own_descendants(func)
    )
