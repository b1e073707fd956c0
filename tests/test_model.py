"""The model's shared facts, checked against plain `ast.walk` answers.

The rules read parents, body node lists, reads and client reads from the model instead of
walking the module themselves; these tests pin what each one holds on tricky code
(decorators, defaults and annotations evaluated outside the body, lambdas, comprehensions,
``match``, nested classes) and on every fixture.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Set

import pytest

from zklint.model import ModuleModel, _grammar_fields, child_nodes, own_nodes

FIXTURES = sorted(Path(__file__).parent.glob("fixtures/ZK*/*.py"))
SHARED = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)

TRICKY = textwrap.dedent(
    '''
    import functools
    from kazoo.client import KazooClient

    zk = KazooClient(hosts="127.0.0.1:2181")
    other = zk

    def retrying(client):
        return lambda func: func

    @retrying(zk)
    def register(path, client: KazooClient = zk, *, hook=lambda c=zk: c.start()) -> KazooClient:
        names = [zk.exists(p) for p in (path, path + "/x")]
        handler = functools.partial(print, zk)
        return zk

    class Service:
        zk: KazooClient

        def __init__(self, hosts):
            self.zk = KazooClient(hosts=hosts)
            self.a, self.b = KazooClient(hosts=hosts), None
            self.c: KazooClient

        def run(self):
            def inner(zk):
                return zk.get("/x")

            self.zk.start()
            return inner(self.zk)

        class Nested:
            value = zk
    '''
)

MATCH = textwrap.dedent(
    '''
    from kazoo.client import KazooClient, KazooState

    zk = KazooClient()

    def listener(state):
        match state:
            case KazooState.LOST:
                zk.stop()
            case _:
                pass
    '''
)


def _reference_parents(tree: ast.AST) -> Dict[ast.AST, ast.AST]:
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, SHARED):
                parents[child] = node
    return parents


def _reference_own(func: ast.AST) -> Set[int]:
    """`ast.walk` of a body, stopping at nested scopes (kept), Lambda: its body only."""
    roots = [func.body] if isinstance(func, ast.Lambda) else list(ast.iter_child_nodes(func))
    found: Set[int] = set()
    stack: List[ast.AST] = roots
    while stack:
        node = stack.pop()
        if isinstance(node, SHARED):
            continue
        found.add(id(node))
        if not isinstance(node, SCOPES):
            stack.extend(ast.iter_child_nodes(node))
    return found


def _sources() -> List[str]:
    texts = [TRICKY] + [path.read_text(encoding="utf-8") for path in FIXTURES]
    if sys.version_info >= (3, 10):
        texts.append(MATCH)
    return texts


@pytest.mark.parametrize("index", range(len(_sources())))
def test_parents_and_body_lists_match_a_plain_walk(index: int) -> None:
    tree = ast.parse(_sources()[index])
    model = ModuleModel(tree)
    assert model.parents() == _reference_parents(tree)
    for node in [tree] + [n for n in ast.walk(tree) if isinstance(n, SCOPES)]:
        listed = [n for n in own_nodes(node) if not isinstance(n, SHARED)]
        assert len({id(n) for n in listed}) == len(listed), "a node listed twice"
        assert {id(n) for n in listed} == _reference_own(node), ast.dump(node)[:80]


@pytest.mark.parametrize("index", range(len(_sources())))
def test_child_nodes_are_the_plain_children_in_order(index: int) -> None:
    # child_nodes reads each class's fields as its grammar signature says (a tuple
    # display where no field is optional): the same children as ast.iter_child_nodes.
    tree = ast.parse(_sources()[index])
    ModuleModel(tree)  # fills the children cache the way the model does
    for node in ast.walk(tree):
        if not isinstance(node, SHARED):
            expected = tuple(c for c in ast.iter_child_nodes(node) if not isinstance(c, SHARED))
            assert child_nodes(node) == expected, ast.dump(node)[:80]


def test_the_grammar_signatures_name_every_field() -> None:
    call, ret = _grammar_fields(ast.Call), _grammar_fields(ast.Return)
    assert call == {"func": ("", "expr"), "args": ("*", "expr"), "keywords": ("*", "keyword")}
    assert ret == {"value": ("?", "expr")}
    assert _grammar_fields(ast.Pass) == {}


def test_shared_operator_nodes_have_no_parent() -> None:
    tree = ast.parse("a = b + c\nd = e + f\nif a == d and not b:\n    pass\n")
    parents = ModuleModel(tree).parents()
    shared = [n for n in ast.walk(tree) if isinstance(n, SHARED)]
    assert shared and all(n not in parents for n in shared)


def _reads(model: ModuleModel) -> Dict[str, List[str]]:
    """Name id -> the kinds of scope each read of it is evaluated in ("module", "register", ...)."""
    found: Dict[str, List[str]] = {}
    for node, scope in model.reads:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            where = scope.kind if scope.kind != "function" else getattr(scope.node, "name", "lambda")
            found.setdefault(node.id, []).append(where)
    return found


def test_reads_carry_the_scope_that_evaluates_them() -> None:
    model = ModuleModel(ast.parse(TRICKY))
    reads = _reads(model)
    # @retrying(zk), the default `client=zk` and `other = zk` run in the module; the
    # lambda default `c=zk` too; `zk.exists(p)` in the comprehension and the rest of
    # register's body run in register; `value = zk` in the nested class body; inner's
    # `zk.get` reads its own parameter.
    assert sorted(reads["zk"]) == sorted(["module"] * 4 + ["register"] * 3 + ["inner", "class"])
    assert reads["c"] == ["lambda"]
    assert "KazooClient" in reads  # constructions are reads of the class name...
    annotations = [n for n, _ in model.reads if isinstance(n, ast.Name) and n.id == "KazooClient"]
    # ...but parameter and return annotations are not: only the three constructions and
    # the class-level/method `zk: KazooClient`-style declarations are left.
    assert len(annotations) == 5


@pytest.mark.skipif(sys.version_info < (3, 10), reason="match needs Python 3.10")
def test_match_value_patterns_are_reads() -> None:
    model = ModuleModel(ast.parse(MATCH))
    pattern_reads = [n for n, _ in model.reads if isinstance(n, ast.Attribute) and n.attr == "LOST"]
    assert len(pattern_reads) == 1


def test_client_reads_resolve_each_read_in_its_own_scope() -> None:
    model = ModuleModel(ast.parse(TRICKY))
    reads = [(node, scope, key) for node, scope, key in model.client_reads()]
    texts = sorted(ast.unparse(node) + "@" + key.name for node, _, key in reads)
    # module-level `zk` everywhere it is read (decorator, defaults, comprehension, class
    # body, alias), `self.zk` in run; never the parameter `zk` of `inner`.
    assert texts.count("zk@zk") == 8
    assert texts.count("self.zk@zk") == 2
    inner_reads = [n for n, scope, _ in reads if getattr(scope.node, "name", "") == "inner"]
    assert inner_reads == []
    assert ("zk", "start") in model.attribute_chains  # self.zk.start()


def test_self_attribute_clients_come_from_the_stores() -> None:
    tree = ast.parse(TRICKY)
    model = ModuleModel(tree)
    run = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run")
    scope = model.scope_of(run)

    def is_client(attr: str) -> bool:
        expr = ast.parse(f"self.{attr}", mode="eval").body
        return model.client_key(expr, scope) is not None

    assert is_client("zk")  # self.zk = KazooClient(...) in __init__
    assert not is_client("a")  # tuple target: the model cannot prove it
    assert not is_client("b")
    # `self.c: KazooClient` in a method declares without assigning: nothing is ever
    # stored in `c`, so the model cannot prove it holds a client.
    assert not is_client("c")


@pytest.mark.parametrize(
    "line, kind, attr, store, with_call",
    [
        ("zk.get('/a')", "attribute", "get", False, True),
        ("zk.stop", "attribute", "stop", False, False),
        ("zk.retry = None", "attribute", "retry", True, False),
        ("show(zk, '/a')", "argument", None, False, True),
        ("show(client=zk)", "argument", None, False, True),
        ("if zk: pass", "test", None, False, False),
        ("ok = zk is None", "test", None, False, False),
        ("ok = not zk", "test", None, False, False),
        ("text = f'{zk}'", "test", None, False, False),
        ("clients.append(zk)", "argument", None, False, True),
        ("keep = [zk]", "other", None, False, False),
        ("return_value = zk", "other", None, False, False),
    ],
)
def test_read_place_tells_where_a_read_stands(line, kind, attr, store, with_call):
    """`call` is the call of ``zk.<attr>(...)``, or the call the client is passed to."""
    from zklint.model import read_place

    model = ModuleModel(ast.parse(f"def f(zk, show, clients):\n    {line}\n"))
    read = next(node for node, _ in model.reads if isinstance(node, ast.Name) and node.id == "zk")
    place = read_place(read, model.parents())
    assert (place.kind, place.attr, place.store, place.call is not None) == (kind, attr, store, with_call)


@pytest.mark.parametrize("edits", [False, True])
def test_a_checked_file_is_freed_before_the_next_is_parsed(tmp_path, monkeypatch, edits):
    """A check frees each file's model and tree when it is done with the file, by reference
    counting: left for the next model to drop, the tree was freed only after the next
    parse, from memory that parse had pushed out of the cache. Fixes computed for the
    output (`edits`, json and sarif) are built before that, and may build the model's
    caches again; those are dropped too."""
    import gc
    import weakref

    import zklint.model as model_module
    from zklint.checking import Job, _detached, run_job
    from zklint.facts import ModuleFacts
    from zklint.rules import all_rules

    path = tmp_path / "service.py"
    path.write_text((Path(__file__).parent / "fixtures/ZK202/bad_class_close_method.py").read_text())
    built: List[weakref.ref] = []
    real_init = ModuleModel.__init__

    def recording_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(weakref.ref(self))

    monkeypatch.setattr(ModuleModel, "__init__", recording_init)
    job = Job(str(path), tuple(all_rules()), {}, False, False, False, edits=edits,
              summarize_as=ModuleFacts(module="service"))
    gc.disable()
    try:
        report = _detached(run_job(job), sent=True)
        assert report.findings and any(finding.fix is not None for finding in report.findings)
        assert built and all(ref() is None for ref in built)
        assert not model_module._CHILDREN and not model_module._OWN_NODES
    finally:
        gc.enable()
