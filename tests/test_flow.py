"""zklint.flow: the block structure rules use to reason about statement order."""

from __future__ import annotations

import ast
import textwrap

from zklint.flow import Flow, before, exits, reraises
from zklint.model import ModuleModel

CODE = textwrap.dedent(
    """
    def f(zk):
        zk.start()
        try:
            for p in paths:
                zk.get(p)
        except KeyError:
            zk.stop()
            raise
        else:
            logger.info("ok")
        finally:
            zk.close()
        def inner():
            zk.delete("/x")
        while True:
            with lock:
                zk.set("/y", b"")
    """
)


def _setup():
    tree = ast.parse(CODE)
    func = tree.body[0]
    calls = {
        node.func.attr: node
        for node in ast.walk(func)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    return func, Flow(func, ModuleModel(tree).parents()), calls


def test_statements_and_blocks():
    func, flow, calls = _setup()
    start_stmt = flow.statement_of(calls["start"])
    assert start_stmt is func.body[0]
    get_blocks = flow.blocks(calls["get"])
    assert [b.field for b in get_blocks] == ["body", "body", "body"]
    assert get_blocks[0].owner is None and isinstance(get_blocks[1].owner, ast.Try)
    assert flow.straight_line_after(start_stmt, calls["get"])
    assert not flow.straight_line_after(func.body[1], calls["start"])


def test_try_structure():
    _, flow, calls = _setup()
    assert flow.enclosing_try_finally(calls["close"]) and not flow.enclosing_try_finally(calls["get"])
    (handler,) = flow.enclosing_handler(calls["stop"])
    assert reraises(handler) and exits(handler.body)
    assert flow.inside_guarded_try(calls["get"]) and not flow.inside_guarded_try(calls["info"])


def test_loops_and_nested_functions():
    _, flow, calls = _setup()
    assert flow.inside_loop(calls["get"]) and flow.inside_loop(calls["set"])
    assert [type(s).__name__ for s in flow.enclosing_loops(calls["set"])] == ["While"]
    assert not flow.contains(calls["delete"])  # belongs to inner()'s own flow
    assert flow.statement_of(calls["delete"]) is None


def test_between_and_order():
    _, flow, calls = _setup()
    between = list(flow.between(calls["start"], calls["stop"]))
    assert calls["get"] in between and calls["close"] not in between
    assert before(calls["start"], calls["get"]) and not before(calls["set"], calls["get"])
