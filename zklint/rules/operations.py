"""ZK5: operations (transactions)."""

from __future__ import annotations

import ast
from typing import Iterator, List, Optional, Sequence, Set, Tuple

from zklint.lazy_import import libcst as cst  # imported on first use: fixes only

from zklint.fixer import FixError, parse_statement, statements_edit, with_block_indent
from zklint.flow import expects_exception
from zklint.model import CallIndex, ModuleModel, Scope, walk
from zklint.findings import Edit, Finding, Import, Safety
from zklint.rules.base import Rule, register
from zklint.rules.ephemeral import RetryCalls, leaves_loop, retried_functions
from zklint.rules.index import calls_named

ROLLED_BACK_ERROR = "kazoo.exceptions.RolledBackError"

_LOOP_TYPES = (ast.For, ast.AsyncFor, ast.While)
_SCOPE_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
# Transaction variable names too generic to prefix the results' name with.
_GENERIC_TRANSACTION_NAMES = {"t", "tr", "tx", "txn", "trans", "transaction"}
_TRANSACTION_SUFFIXES = ("_transaction", "_txn", "_tx")


def is_transaction_expr(model: ModuleModel, expr: ast.AST, scope: Scope, depth: int = 0) -> bool:
    """``<client>.transaction()``, or a variable every binding of which is one."""
    if isinstance(expr, ast.Call):
        func = expr.func
        if not (isinstance(func, ast.Attribute) and func.attr == "transaction") or expr.args or expr.keywords:
            return False
        return model.is_client_expr(func.value, scope)
    if isinstance(expr, ast.Name) and depth < 3:
        owner = model.lookup(expr.id, scope)
        if owner is None or expr.id in owner.params:
            return False
        values = owner.bindings.get(expr.id, ())
        return bool(values) and all(
            isinstance(value, ast.expr) and is_transaction_expr(model, value, owner, depth + 1) for value in values
        )
    return False


def commit_receiver(model: ModuleModel, expr: ast.AST, scope: Scope) -> Optional[ast.expr]:
    """The transaction of ``T.commit()`` or ``T.commit_async().get(...)``, else None."""
    if not (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute)):
        return None
    func = expr.func
    if func.attr == "commit" and not expr.args and not expr.keywords:
        receiver = func.value
    elif (
        func.attr == "get"
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Attribute)
        and func.value.func.attr == "commit_async"
        and not func.value.args
        and not func.value.keywords
    ):
        receiver = func.value.func.value
    else:
        return None
    return receiver if is_transaction_expr(model, receiver, scope) else None


def _identifiers(node: ast.AST) -> Set[str]:
    """Every name bound or read anywhere below `node` (nested scopes included)."""
    names: Set[str] = set()
    for sub in walk(node):
        for attr in ("id", "arg", "name", "asname", "rest"):
            value = getattr(sub, attr, None)
            if isinstance(value, str):
                names.add(value.partition(".")[0])
        if isinstance(sub, (ast.Global, ast.Nonlocal)):
            names.update(sub.names)
    return names


def _escapes_block(body: Sequence[ast.stmt]) -> bool:
    """Would `return`, or a `break`/`continue` of an enclosing loop, leave this block early?"""
    stack: List[Tuple[ast.AST, bool]] = [(stmt, False) for stmt in body]
    while stack:
        node, in_loop = stack.pop()
        if isinstance(node, _SCOPE_TYPES):
            continue
        if isinstance(node, ast.Return):
            return True
        if isinstance(node, (ast.Break, ast.Continue)) and not in_loop:
            return True
        if isinstance(node, _LOOP_TYPES):
            for child in node.body:
                stack.append((child, True))
            for child in node.orelse:
                stack.append((child, in_loop))
            continue
        for child in ast.iter_child_nodes(node):
            stack.append((child, in_loop))
    return False


@register
class TransactionResultUnchecked(Rule):
    code = "ZK501"
    name = "transaction-result-unchecked"
    summary = "The results of a transaction's commit() are thrown away, so a failed transaction goes unnoticed."
    why = (
        "kazoo does not raise when a transaction fails: commit() (and commit_async().get()) "
        "returns one result per operation, and on failure every item is an exception "
        "instance, e.g. [RolledBackError(), NoNodeError()]: nothing was applied. Code that "
        "discards the list carries on as if the nodes had been created, deleted or updated. "
        "`with client.transaction() as t:` commits on exit and always throws the list away. "
        "Only connection problems raise."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def update_config(zk: KazooClient, version, new_value):\n"
        "    t = zk.transaction()\n"
        "    t.check(\"/config\", version)\n"
        "    t.set_data(\"/config\", new_value)\n"
        "    t.commit()\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.exceptions import RolledBackError\n"
        "\n"
        "\n"
        "def update_config(zk: KazooClient, version, new_value):\n"
        "    t = zk.transaction()\n"
        "    t.check(\"/config\", version)\n"
        "    t.set_data(\"/config\", new_value)\n"
        "    results = t.commit()\n"
        "    for result in results:\n"
        "        if isinstance(result, Exception) and not isinstance(result, RolledBackError):\n"
        "            raise result\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "The fix raises the error of the operation that failed (the first error that is not a "
        "RolledBackError: the operations before it report RolledBackError, the ones after it "
        "RuntimeInconsistency), so code that used to carry on after a failed transaction now "
        "stops with that exception. The `with` form is rewritten to straight-line code with "
        "the same behaviour (operations, then a commit that runs only if they did not raise); "
        "a body that can leave early (return, break, continue: the with form still commits "
        "then) goes into `try:` with the commit and its check in the `finally`, skipped only "
        "when the body raised (`except BaseException:` sets a flag and re-raises), which is "
        "what the with form's __exit__ does; a failed commit's error then replaces the early "
        "return. It is left unfixed when the with is on one line. A with of several context "
        "managers is first split at the transaction (`with a, b:` is `with a: with b:` by the "
        "language's definition), then rewritten."
    )
    limits = (
        "Transactions are recognised only on a client the model can prove (built from "
        "KazooClient in this module and kept in a variable or a self attribute, or a parameter "
        "annotated KazooClient): `def publish(zk): zk.transaction()` with an unannotated `zk` "
        "is not checked. The transaction itself must be `client.transaction()` or a variable "
        "bound only to such calls; transactions passed as parameters or kept in attributes are "
        "not tracked. "
        "A result that is assigned is considered checked as soon as the variable is read "
        "anywhere (returned, logged, indexed): the rule only reports a result assigned to a "
        "name that is never read, and never one assigned to `_` or another `_name` (an explicit "
        "discard). A bare "
        "`commit_async()` whose async result is dropped is not reported (its fix would make an "
        "asynchronous call synchronous). Results kept at class level are not checked, and commits "
        "inside `with pytest.raises(...)`/`assertRaises(...)` (tests expecting a failure) are skipped. "
        "`with t:` on a transaction variable (rather than `with client.transaction() as t:`) is not "
        "reported."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        parents = model.parents()
        # Every shape holds a call: `client.transaction()` as a `with` item, or `T.commit()` /
        # `T.commit_async().get()` as a statement's value. Start from those calls.
        for stmt, scope in model.withs:
            if stmt.__class__ is ast.With and any(item.context_expr.__class__ is ast.Call for item in stmt.items):
                finding = self._with_form(stmt, scope)
                if finding is not None and not self._expected_to_raise(stmt, scope.node):
                    yield finding
        for site in calls_named(model, ["commit", "get"]):
            call, scope = site.node, site.scope
            if scope.kind == "function" and isinstance(scope.node, ast.Lambda):
                continue
            parent = parents.get(call)
            cls = parent.__class__  # exact classes: ast.parse makes no subclasses
            if cls is ast.withitem and parent.context_expr is call:
                continue  # a `with` item: above
            elif call.func.__class__ is not ast.Attribute:
                continue
            elif cls is ast.Expr:
                stmt, finding = parent, self._discarded(parent, scope)
            elif (cls is ast.Assign or cls is ast.AnnAssign) and parent.value is call:
                stmt, finding = parent, self._never_read(parent, scope)
            else:
                continue
            if finding is not None and not self._expected_to_raise(stmt, scope.node):
                yield finding

    def _expected_to_raise(self, stmt: ast.stmt, scope_node: ast.AST) -> bool:
        """Inside ``with pytest.raises(...)`` / ``self.assertRaises(...)``: the test wants it to fail."""
        parents = self.model.parents()
        node = parents.get(stmt)
        while node is not None and node is not scope_node:
            if expects_exception(node):
                return True
            node = parents.get(node)
        return False

    # ---- the three shapes ---------------------------------------------------------------

    def _discarded(self, stmt: ast.Expr, scope: Scope) -> Optional[Finding]:
        receiver = commit_receiver(self.model, stmt.value, scope)
        if receiver is None:
            return None
        stem = receiver.id if isinstance(receiver, ast.Name) else None
        return self.finding(
            stmt.value,
            "transaction result discarded: kazoo does not raise when a transaction fails, it returns "
            "the errors in this list, so the failure goes unnoticed",
            "Raise the error of the failed operation",
            (lambda source: self._fix_discarded(source, stmt, scope, stem)) if self._on_own_lines(stmt) else None,
            imports=self._imports(),
        )

    def _on_own_lines(self, stmt: ast.stmt) -> bool:
        """Does the statement have its lines to itself (no ``if x: stmt``, no ``a; stmt``)?"""
        source = self.context.source
        if source is None:
            return True
        before = source.line_text(stmt.lineno)[: source.char_col(stmt.lineno, stmt.col_offset)]
        after = source.line_text(stmt.end_lineno)[source.char_col(stmt.end_lineno, stmt.end_col_offset):]
        return not before.strip() and (not after.strip() or after.lstrip().startswith("#"))

    def _never_read(self, stmt, scope: Scope) -> Optional[Finding]:
        if isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1:
                return None
            target = stmt.targets[0]
        else:
            target = stmt.target
        if not isinstance(target, ast.Name) or target.id.startswith("_") or stmt.value is None:
            return None
        if scope.kind == "class" or commit_receiver(self.model, stmt.value, scope) is None:
            return None
        if target.id in scope.global_names or target.id in scope.nonlocal_names:
            return None
        region = scope.node if scope.kind == "function" else self.model.tree
        for sub in walk(region):
            if isinstance(sub, ast.Name) and sub.id == target.id and not isinstance(sub.ctx, (ast.Store, ast.Del)):
                return None
            if isinstance(sub, (ast.Global, ast.Nonlocal)) and target.id in sub.names and sub is not stmt:
                return None
        name = target.id
        return self.finding(
            stmt.value,
            f"transaction results assigned to {name!r} are never read: kazoo does not raise when a "
            "transaction fails, it returns the errors in that list",
            "Raise the error of the failed operation",
            (lambda source: self._fix_never_read(source, stmt, scope, name)) if self._on_own_lines(stmt) else None,
            imports=self._imports(),
        )

    def _with_form(self, stmt: ast.With, scope: Scope) -> Optional[Finding]:
        for item in stmt.items:
            if not is_transaction_expr(self.model, item.context_expr, scope) or not isinstance(
                item.context_expr, ast.Call
            ):
                continue
            if item.optional_vars is None:
                return None  # nothing can be added to it: an empty commit
            fixable = (
                scope.kind != "class"
                and isinstance(item.optional_vars, ast.Name)
                and stmt.body[0].lineno > stmt.lineno
            )
            build = None
            if fixable and len(stmt.items) == 1:
                build = lambda source: self._fix_with(source, stmt, scope)  # noqa: E731
            elif fixable:
                # `with a, b:` is `with a: with b:` by definition: split at the
                # transaction, and the next pass rewrites its own one-item with.
                build = lambda source, k=stmt.items.index(item): self._split_with(source, stmt, k)  # noqa: E731
            return self.finding(
                item.context_expr,
                "`with transaction()` commits on exit and throws the results away: kazoo does not "
                "raise when the transaction fails, so the failure goes unnoticed",
                "Commit explicitly and raise the error of the failed operation",
                build,
                imports=self._imports(),
            )
        return None

    # ---- fixes ----------------------------------------------------------------------------

    def _imports(self) -> Tuple[Import, ...]:
        if self.model.local_name_for(ROLLED_BACK_ERROR) is not None:
            return ()
        return (Import("kazoo.exceptions", "RolledBackError"),)

    def _rolled_back_name(self) -> str:
        local = self.model.local_name_for(ROLLED_BACK_ERROR)
        if local is not None:
            return local
        if "RolledBackError" in self.model.module_scope.bindings:
            raise FixError("RolledBackError names something else here")
        return "RolledBackError"

    def _taken(self, scope: Scope) -> Set[str]:
        """Names a new variable in `scope` must not take: everything the scope (or, at
        module level, the module) mentions, so no existing read changes meaning."""
        if scope.kind == "class":
            raise FixError("transaction committed in a class body")
        region = scope.node if scope.kind == "function" else self.model.tree
        return _identifiers(region)

    def _result_names(self, scope: Scope, stem: Optional[str]) -> Tuple[str, str]:
        taken = self._taken(scope)
        candidates = [("results", "result")]
        if stem:
            for suffix in _TRANSACTION_SUFFIXES:
                if stem.endswith(suffix) and len(stem) > len(suffix):
                    stem = stem[: -len(suffix)]
                    break
            else:
                if stem in _GENERIC_TRANSACTION_NAMES:
                    stem = None
        if stem:
            candidates.append((f"{stem}_results", f"{stem}_result"))
        candidates += [("txn_results", "txn_result"), ("commit_results", "commit_result")]
        for results, result in candidates:
            if results not in taken and result not in taken:
                return results, result
        raise FixError("no free name for the transaction results")

    def _result_name(self, scope: Scope, results: str) -> str:
        taken = self._taken(scope)
        for candidate in ("result", "txn_result", "commit_result"):
            if candidate not in taken:
                return candidate
        raise FixError("no free name for a transaction result")

    def _check_loop(self, source, results: str, result: str) -> cst.BaseStatement:
        rolled_back = self._rolled_back_name()
        loop = parse_statement(
            source,
            f"for {result} in {results}:\n"
            f"    if isinstance({result}, Exception) and not isinstance({result}, {rolled_back}):\n"
            f"        raise {result}",
        )
        # Spell out each block's indent: left implicit, it would follow whatever indent
        # libcst infers from the (indented) snippet the statement is spliced into.
        return with_block_indent(loop, source.indent_unit)

    def _fix_discarded(self, source, stmt: ast.Expr, scope: Scope, stem: Optional[str]) -> List[Edit]:
        results, result = self._result_names(scope, stem)

        def transform(statements):
            line = statements[0]
            if not isinstance(line, cst.SimpleStatementLine) or len(line.body) != 1:
                raise FixError("commit shares its line with another statement")
            expr = line.body[0]
            assign = cst.Assign(targets=[cst.AssignTarget(target=cst.Name(results))], value=expr.value)
            return [line.with_changes(body=[assign]), self._check_loop(source, results, result)]

        return [statements_edit(source, [stmt], transform)]

    def _fix_never_read(self, source, stmt, scope: Scope, name: str) -> List[Edit]:
        result = self._result_name(scope, name)
        return [statements_edit(source, [stmt], lambda statements: list(statements) + [
            self._check_loop(source, name, result)
        ])]

    @staticmethod
    def _split_with(source, stmt: ast.With, k: int) -> List[Edit]:
        """``with a as x, T as t, b as y:`` -> ``with a as x:`` / ``with T as t:`` /
        ``with b as y:``, nested: the same statement by the language's definition."""

        def transform(statements):
            node = statements[0]
            if not isinstance(node, cst.With) or len(node.items) != len(stmt.items) or node.asynchronous is not None:
                raise FixError("unexpected with statement")
            if not isinstance(node.body, cst.IndentedBlock) or isinstance(node.lpar, cst.LeftParen):
                raise FixError("with statement on one line or parenthesized")
            items = list(node.items)
            groups = [g for g in (items[:k], [items[k]], items[k + 1:]) if g]
            inner = node.body.with_changes(header=cst.TrailingWhitespace())
            for depth, group in enumerate(reversed(groups)):
                group = group[:-1] + [group[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)]
                statement = node.with_changes(items=group, leading_lines=[], body=inner)
                if depth < len(groups) - 1:
                    inner = cst.IndentedBlock(body=[statement], indent=source.indent_unit)
            statement = statement.with_changes(
                leading_lines=node.leading_lines, body=statement.body.with_changes(header=node.body.header)
            )
            return [statement]

        return [statements_edit(source, [stmt], transform)]

    def _fix_with(self, source, stmt: ast.With, scope: Scope) -> List[Edit]:
        if len(stmt.items) != 1 or not isinstance(stmt.items[0].optional_vars, ast.Name):
            raise FixError("with statement has several context managers or a complex target")
        transaction = stmt.items[0].optional_vars.id
        results, result = self._result_names(scope, transaction)
        early_exit = _escapes_block(stmt.body)
        aborted = next((n for n in ("aborted", "txn_aborted") if n not in self._taken(scope)), None)
        if early_exit and (aborted is None or aborted in (results, result)):
            raise FixError("no free name for the abort flag")

        def transform(statements):
            node = statements[0]
            if not isinstance(node, cst.With) or len(node.items) != 1 or node.asynchronous is not None:
                raise FixError("unexpected with statement")
            if not isinstance(node.body, cst.IndentedBlock):
                raise FixError("with statement on one line")
            item = node.items[0]
            if item.asname is None or not isinstance(item.asname.name, cst.Name):
                raise FixError("unexpected with target")
            opening = cst.SimpleStatementLine(
                body=[cst.Assign(targets=[cst.AssignTarget(target=item.asname.name)], value=item.item)],
                leading_lines=node.leading_lines,
                trailing_whitespace=node.body.header,
            )
            if early_exit:
                # The block can return, break or continue, and the with form commits then
                # too: the commit and its check go in a finally that skips them only
                # when the block raised, as the with form's __exit__ does.
                flag = parse_statement(source, f"{aborted} = False")
                template = parse_statement(
                    source,
                    "try:\n    pass\n"
                    f"except BaseException:\n    {aborted} = True\n    raise\n"
                    f"finally:\n    if not {aborted}:\n        {results} = {transaction}.commit()\n",
                )
                guard = template.finalbody.body.body[0]
                guard = guard.with_changes(body=guard.body.with_changes(
                    body=[*guard.body.body, self._check_loop(source, results, result)]))
                try_node = template.with_changes(
                    body=template.body.with_changes(body=list(node.body.body)),
                    finalbody=template.finalbody.with_changes(
                        body=template.finalbody.body.with_changes(body=[guard])),
                )
                return [opening, flag, with_block_indent(try_node, source.indent_unit)]
            commit = parse_statement(source, f"{results} = {transaction}.commit()")
            commit = commit.with_changes(leading_lines=list(node.body.footer))
            return [opening, *node.body.body, commit, self._check_loop(source, results, result)]

        return [statements_edit(source, [stmt], transform)]


# ---- ZK502 ------------------------------------------------------------------------------

# Handler types a hand-written retry loop uses to retry a lost connection.
_RETRIED_ERRORS = {
    "kazoo.exceptions." + name
    for name in ("ConnectionLoss", "ConnectionLossException", "ZookeeperError", "KazooException")
}
# Transaction methods that add an operation (they return None).
_TRANSACTION_OPERATIONS = {"create", "delete", "set_data", "check"}
_RETRIED_FUNCTION_NAMES = ("commit_transaction", "commit_transaction_once", "commit_once")


@register
class TransactionCommitRetried(Rule):
    code = "ZK502"
    name = "transaction-commit-retried"
    summary = "A transaction built once is committed under a retry: the retry fails with ValueError."
    why = (
        "kazoo marks a transaction committed before it sends it (TransactionRequest.commit_async "
        "sets `committed = True`, then queues the request). When the connection drops during the "
        "commit, the commit fails with ConnectionLoss and the retry (client.retry, a KazooRetry "
        "object, a retry decorator or a hand-written loop that catches ConnectionLoss) calls "
        "commit() again on the same object: it raises ValueError('Transaction already "
        "committed') at once. ValueError is not retried, so the program dies with an error that "
        "hides the connection loss, and it cannot tell whether the first attempt was applied: "
        "the server may have run the whole transaction and only the reply was lost."
    )
    example = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def enqueue(zk: KazooClient, job_id, payload):\n"
        "    t = zk.transaction()\n"
        "    t.create(\"/jobs/\" + job_id, payload)\n"
        "    t.set_data(\"/jobs/last\", job_id.encode())\n"
        "    return zk.retry(t.commit)\n"
    )
    use_instead = (
        "from kazoo.client import KazooClient\n"
        "\n"
        "\n"
        "def enqueue(zk: KazooClient, job_id, payload):\n"
        "    def commit_transaction():\n"
        "        t = zk.transaction()\n"
        "        t.create(\"/jobs/\" + job_id, payload)\n"
        "        t.set_data(\"/jobs/last\", job_id.encode())\n"
        "        return t.commit()\n"
        "\n"
        "    # A retry may follow an attempt that was applied but whose reply was lost: then\n"
        "    # this attempt reports NodeExistsError. Check the nodes before treating it as failed.\n"
        "    return zk.retry(commit_transaction)\n"
    )
    fix_safety = Safety.UNSAFE
    fix_safety_reason = (
        "The fix moves the statements that build the transaction, with its commit, into a "
        "function that the retry calls, so every attempt builds and commits a fresh "
        "transaction. That changes what the program does after a lost reply: instead of "
        "dying with ValueError it sends the transaction again, which may run it twice or "
        "report a failure (NodeExistsError, BadVersionError) for an attempt whose first try "
        "was applied. The arguments of the operations are evaluated on each attempt. Review "
        "how the caller reads the outcome."
    )
    limits = (
        "Retries seen: client.retry(t.commit), a KazooRetry object called with t.commit, t.commit() "
        "in a function of the module run by client.retry/KazooRetry or decorated by "
        "tenacity/retrying/backoff with a filter that lets ConnectionLoss through, and t.commit() "
        "in the try of a loop whose except handler catches ConnectionLoss, ZookeeperError or "
        "KazooException and stays in the loop. The transaction must be `client.transaction()` "
        "on a client the model proves, or a variable bound only to such calls; for the function "
        "and loop shapes it must be bound outside the retried function or loop (a transaction "
        "rebuilt in the loop's handler is trusted). commit_async() under a retry is not "
        "checked. The fix applies to `client.retry(t.commit)`/`retry_object(t.commit)` when "
        "`t = client.transaction()` and the statements that add its operations directly precede "
        "the retry in the same block and `t` is used nowhere else."
    )

    def check(self) -> Iterator[Finding]:
        model = self.model
        retried = retried_functions(model)
        retry = RetryCalls.of(model)
        retry_calls = retry.ids
        # the retry calls and the commits: no other call is looked at
        for site in CallIndex.of(model).calls(names=retry.callee_names | {"commit", "get"}, others=True):
            call, scope = site.node, site.scope
            if id(call) in retry_calls:
                arg = call.args[0]
                if (
                    isinstance(arg, ast.Attribute) and arg.attr == "commit"
                    and is_transaction_expr(model, arg.value, scope)
                ):
                    yield self._retried_commit(call, arg, scope)
                continue
            receiver = commit_receiver(model, call, scope)
            if not isinstance(receiver, ast.Name):
                continue  # `client.transaction().commit()`: built by the same attempt
            if scope.kind == "function" and id(scope.node) in retried:
                if model.lookup(receiver.id, scope) is not scope:
                    yield self.finding(
                        call,
                        f"{receiver.id}.commit() {retried[id(scope.node)]}, on a transaction built outside "
                        "it: after a ConnectionLoss the retry commits the same object again and kazoo raises "
                        "ValueError('Transaction already committed'); build the transaction inside",
                    )
                continue
            loop = self._retry_loop(call, receiver, scope)
            if loop is not None:
                yield self.finding(
                    call,
                    f"{receiver.id}.commit() is retried by the loop on line {loop.lineno} but the "
                    "transaction is built before it: the second attempt raises ValueError('Transaction "
                    "already committed'); build the transaction inside the loop",
                )

    # ---- the loop shape -------------------------------------------------------------------

    def _retry_loop(self, call: ast.Call, receiver: ast.Name, scope: Scope) -> Optional[ast.stmt]:
        """The loop that retries this commit through an except handler, when the transaction
        is bound outside it."""
        parents = self.model.parents()
        child, node = call, parents.get(call)
        in_try = False
        while node is not None and not isinstance(node, _SCOPE_TYPES):
            if isinstance(node, ast.Try) and child in node.body:
                if any(self._catches_retried(h.type) and not leaves_loop(h) for h in node.handlers):
                    in_try = True
            if in_try and isinstance(node, _LOOP_TYPES) and child in node.body:
                if self.model.lookup(receiver.id, scope) is scope and any(
                    value is not None and _within(value, node) for value in scope.bindings.get(receiver.id, ())
                ):
                    return None  # (re)built inside the loop: each attempt commits a fresh one
                return node
            child, node = node, parents.get(node)
        return None

    def _catches_retried(self, expr: Optional[ast.expr]) -> bool:
        if expr is None:
            return False
        if isinstance(expr, ast.Tuple):
            return any(self._catches_retried(e) for e in expr.elts)
        return self.model.qualname(expr) in _RETRIED_ERRORS

    # ---- client.retry(t.commit) -------------------------------------------------------------

    def _retried_commit(self, call: ast.Call, commit: ast.Attribute, scope: Scope) -> Finding:
        receiver = commit.value
        text = receiver.id if isinstance(receiver, ast.Name) else "transaction"
        plan = self._fix_plan(call, receiver, scope)
        build = None
        if plan is not None:
            build = lambda source: [self._fix(source, scope, *plan)]  # noqa: E731
        return self.finding(
            call,
            f"{text}.commit is retried on one transaction object: after a ConnectionLoss the retry "
            "calls commit() again and kazoo raises ValueError('Transaction already committed'), hiding "
            "whether the first attempt was applied; build the transaction inside the retried function",
            "Build and commit the transaction inside the retried function",
            build,
        )

    def _fix_plan(self, call: ast.Call, receiver: ast.expr, scope: Scope):
        """(statements building the transaction, the retry's statement, name) or None."""
        model = self.model
        if not isinstance(receiver, ast.Name) or scope.kind == "class" or len(call.args) != 1 or call.keywords:
            return None
        name = receiver.id
        if model.lookup(name, scope) is not scope or name in scope.global_names or name in scope.nonlocal_names:
            return None
        values = scope.bindings.get(name, ())
        if len(values) != 1:
            return None
        parents = model.parents()
        binding = parents.get(values[0])
        retry_stmt = parents.get(call)
        if not (
            isinstance(binding, ast.Assign) and len(binding.targets) == 1
            and isinstance(binding.targets[0], ast.Name) and binding.value is values[0]
        ):
            return None
        if not (isinstance(retry_stmt, (ast.Expr, ast.Return, ast.Assign)) and retry_stmt.value is call):
            return None
        block = _statement_list(parents, binding)
        if block is None or not any(s is retry_stmt for s in block):
            return None
        first = next(i for i, s in enumerate(block) if s is binding)
        last = next(i for i, s in enumerate(block) if s is retry_stmt)
        if last <= first:
            return None
        building = list(block[first:last])
        for stmt in building[1:]:
            if not _adds_operation(stmt, name):
                return None
        run = building + [retry_stmt]
        region = scope.node if scope.kind == "function" else model.tree
        for sub in walk(region):
            if isinstance(sub, ast.Name) and sub.id == name and sub is not receiver:
                if not any(_within(sub, s) for s in building):
                    return None  # the transaction is used elsewhere: it must stay where it is
        taken = _identifiers(region) | _identifiers(model.tree)
        for candidate in _RETRIED_FUNCTION_NAMES:
            if candidate not in taken:
                return run, name, candidate
        return None

    def _fix(self, source, scope: Scope, run: List[ast.stmt], name: str, func_name: str) -> Edit:
        module_level = scope.kind == "module"

        def transform(statements: List[cst.BaseStatement]) -> List[cst.BaseStatement]:
            if len(statements) != len(run):
                raise FixError("several statements share a line")
            *building, retry = statements
            leading = list(building[0].leading_lines)
            building[0] = building[0].with_changes(leading_lines=())
            commit = parse_statement(source, f"return {name}.commit()")
            template = parse_statement(source, f"def {func_name}():\n    pass")
            definition = template.with_changes(
                body=template.body.with_changes(body=building + [commit], indent=source.indent_unit),
                leading_lines=leading,
            )
            blank = cst.EmptyLine(indent=False, whitespace=cst.SimpleWhitespace(""))
            retry = _rename_commit(retry, name, func_name)
            retry = retry.with_changes(
                leading_lines=[blank] * (2 if module_level else 1) + list(retry.leading_lines)
            )
            return [definition, retry]

        return statements_edit(source, run, transform)


def _rename_commit(node: "cst.CSTNode", name: str, func_name: str) -> "cst.CSTNode":
    """`node` with ``<name>.commit`` replaced by ``<func_name>``."""

    class Renamer(cst.CSTTransformer):  # made here: libcst is imported on first use
        def leave_Attribute(self, original, updated):
            if isinstance(updated.value, cst.Name) and updated.value.value == name and updated.attr.value == "commit":
                return cst.Name(func_name)
            return updated

    return node.visit(Renamer())


def _adds_operation(stmt: ast.stmt, name: str) -> bool:
    """``<name>.create(...)`` / ``.delete`` / ``.set_data`` / ``.check`` as a statement."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (
        isinstance(func, ast.Attribute) and func.attr in _TRANSACTION_OPERATIONS
        and isinstance(func.value, ast.Name) and func.value.id == name
    )


def _statement_list(parents, stmt: ast.stmt) -> Optional[List[ast.stmt]]:
    """The statement list (body, orelse, finalbody, handler body) that holds `stmt`."""
    parent = parents.get(stmt)
    if parent is None:
        return None
    for field in ("body", "orelse", "finalbody"):
        stmts = getattr(parent, field, None)
        if isinstance(stmts, list) and any(s is stmt for s in stmts):
            return stmts
    return None


def _within(node: ast.AST, container: ast.AST) -> bool:
    return (container.lineno, container.col_offset) <= (node.lineno, node.col_offset) and (
        (node.end_lineno, node.end_col_offset) <= (container.end_lineno, container.end_col_offset)
    )
