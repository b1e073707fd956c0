"""The project layer's settling, on summaries of small module sets: facts are the same
whatever order the modules come in, cycles prove nothing, a callee is a mere user only
when every callee down the line is, and a module the project tells nothing new keeps the
facts it has alone."""

from __future__ import annotations

import ast
import itertools
import os
import textwrap
from pathlib import Path
from typing import Dict

import pytest

from zklint.facts import USES, ModuleFacts
from zklint.model import ModuleModel
from zklint.project.solve import Solution, solve_alone
from zklint.project.summary import ModuleSummary, summarize


def summaries(modules: Dict[str, str]):
    found = []
    for name, text in modules.items():
        model = ModuleModel(ast.parse(textwrap.dedent(text)), ModuleFacts(module=name))
        found.append(summarize(model))
    return found


PROJECT = {
    "app.conn": """
        from kazoo.client import KazooClient

        def connect(hosts):
            zk = KazooClient(hosts=hosts)
            zk.start()
            return zk

        def show(zk, path):
            return zk.get(path)

        def forward(zk, path):
            return show(zk, path)

        def keep(zk):
            KEPT.append(zk)

        KEPT = []
    """,
    "app.jobs": """
        from app.conn import connect, forward, keep

        def run(hosts):
            zk = connect(hosts)
            forward(zk, "/a")
            keep(zk)

        def archive(zk, path):
            zk.create(path, b"", ephemeral=True)

        def main(hosts):
            zk = connect(hosts)
            archive(zk, "/b")
    """,
    "app": """
        from app.conn import connect
    """,
}


def test_facts_do_not_depend_on_the_order_modules_come_in():
    parts = summaries(PROJECT)
    views = None
    for order in itertools.permutations(parts):
        solution = Solution(list(order))
        got = {module: solution.view(module).fingerprint() for module in PROJECT}
        if views is None:
            views = got
        assert got == views


def test_factories_effects_and_parameters():
    solution = Solution(summaries(PROJECT))
    assert solution.factories["app.conn.connect"] is True  # starts what it returns
    effects = solution.param_effects
    assert effects.get(("app.conn.show", "zk")) == USES
    assert effects.get(("app.conn.forward", "zk")) == USES  # passes it on to a mere user
    assert ("app.conn.keep", "zk") not in effects  # keeps it: may own it
    assert ("app.jobs.archive", "zk") in solution.client_params  # its one caller passes a client
    assert solution.canonical("app.connect") == "app.conn.connect"  # a re-export
    view = solution.view("app.jobs")
    assert view.factories["app.conn.connect"] is True
    assert view.param_effects[("app.conn.forward", "#0")] == USES


def test_a_cycle_of_factories_proves_nothing():
    solution = Solution(summaries({
        "loop": """
            def first():
                return second()

            def second():
                return first()
        """,
    }))
    assert "loop.first" not in solution.factories and "loop.second" not in solution.factories


def test_a_cycle_of_mere_users_is_a_mere_user():
    solution = Solution(summaries({
        "ping": """
            def ping(zk, n):
                zk.exists("/")
                if n:
                    pong(zk, n - 1)

            def pong(zk, n):
                ping(zk, n)

            def main():
                from kazoo.client import KazooClient
                zk = KazooClient()
                ping(zk, 3)
        """,
    }))
    # ping hands the client to pong, which hands it back: the cycle leaves ping a mere user
    # (pong's own parameter proves nothing: its only caller's is not a proven client)
    assert solution.param_effects.get(("ping.ping", "zk")) == USES
    assert ("ping.pong", "zk") not in solution.client_params


def test_a_caller_out_of_sight_keeps_a_parameter_unknown():
    parts = summaries({"lib": """
        def archive(zk, path):
            zk.create(path, b"")

        def main():
            from kazoo.client import KazooClient
            archive(KazooClient(), "/a")
    """})
    assert ("lib.archive", "zk") in Solution(parts).client_params
    mentioned = Solution(parts, mentioned_outside=lambda names: "archive" in names)
    assert ("lib.archive", "zk") not in mentioned.client_params


def test_a_module_alone_and_in_a_project_that_tells_it_nothing_have_equal_facts():
    parts = summaries({**PROJECT, "app.report": """
        from kazoo.client import KazooClient

        def report(hosts):
            zk = KazooClient(hosts=hosts)
            zk.start()
            try:
                return zk.get_children("/jobs")
            finally:
                zk.stop()
                zk.close()
    """})
    alone = next(s for s in parts if s.module == "app.report")
    assert solve_alone(alone) == Solution(parts).view("app.report")
    # and one the project does tell something: its callers pass it clients
    conn = next(s for s in parts if s.module == "app.conn")
    assert solve_alone(conn) != Solution(parts).view("app.conn")


def test_summaries_survive_the_cache_format():
    for summary in summaries(PROJECT):
        again = ModuleSummary.from_json(summary.to_json())
        assert again.to_json() == summary.to_json()


@pytest.mark.parametrize("module", sorted(PROJECT))
def test_views_hold_no_more_than_the_module_can_ask(module):
    parts = summaries(PROJECT)
    solution = Solution(parts)
    view = solution.view(module)
    summary = next(s for s in parts if s.module == module)
    reachable = set(summary.functions) | set(summary.classes)
    for name in list(summary.imports.values()) + [c.callee for c in summary.calls]:
        reachable.add(solution.canonical(name))
    asked = set(view.factories) | {q for q, _ in view.param_effects} | {q for q, _ in view.client_params}
    asked |= set(view.blocking) | {q for q, _ in view.synchronous} | set(view.client_attrs)
    assert asked <= reachable
    if module == "app":  # it only re-exports: nothing of its own to ask about
        assert not view.param_effects and not view.client_params


def test_a_summary_packs_to_the_same_bytes_in_every_process():
    """The cache keys the project's facts by the summaries' digests: two processes (with
    their own string hashing) must pack the same summary to the same bytes."""
    import subprocess
    import sys

    source = Path(__file__).parent / "fixtures" / "projects" / "handoff"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from zklint.facts import ModuleFacts\n"
        "from zklint.model import ModuleModel\n"
        "from zklint.project.summary import summarize\n"
        "from zklint.source import parse_module\n"
        "for path in sorted(Path(sys.argv[1]).rglob('*.py')):\n"
        "    tree = parse_module(path.read_text(), str(path))\n"
        "    print(summarize(ModuleModel(tree, ModuleFacts(module=path.stem))).digest())\n"
    )
    digests = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", code, str(source)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        digests.add(done.stdout)
    assert len(digests) == 1 and digests.pop().count("\n") >= 2


def test_a_solution_is_freed_without_the_cyclic_collector():
    """Workers settle every module alone, one Solution per file: a reference cycle in it
    (a closure that calls itself, say) would keep each, with its tables, until the cyclic
    collector runs, and the workers' memory would grow with the project."""
    import gc
    import weakref

    parts = summaries(PROJECT)
    gc.disable()
    try:
        solution = Solution(parts)
        for part in parts:
            solution.view(part.module)
        freed = weakref.ref(solution)
        del solution
        assert freed() is None
    finally:
        gc.enable()
