"""Generate a deterministic tree of realistic kazoo code for the benchmarks.

Every file is composed from varied snippets in the styles of ``tests/fixtures``: service
classes holding ``self.zk``, state listeners, raw watches and DataWatch/ChildrenWatch
(decorator and call forms), retry policies (finite and unlimited, objects and dicts, the
legacy keywords), transactions, locks and other recipes, async results with ``rawlink``,
command-line scripts and module-level clients, plus the ordinary code around them
(dataclasses, parsing, logging helpers). Names, paths, numbers and the mix of snippets
vary per file, so no two files are the same; a fixed seed makes the tree reproducible.

    python bench/generate.py OUTDIR --lines 200000 [--seed 7]

Every generated file is checked with ``ast.parse`` before it is written.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import sys
from string import Template
from typing import Dict, List, Set, Tuple

WORDS = (
    "billing", "ledger", "orders", "catalog", "search", "ingest", "indexer", "payments", "auth",
    "session", "gateway", "scheduler", "worker", "notifier", "mailer", "reports", "metrics",
    "inventory", "pricing", "shipping", "profile", "feed", "media", "thumbs", "export", "audit",
    "quota", "router", "shard", "replica", "config", "feature", "tenant", "cluster", "broker",
)
NOUNS = ("Registry", "Coordinator", "Watcher", "Service", "Manager", "Agent", "Leader", "Member",
         "Publisher", "Tracker", "Allocator", "Monitor", "Syncer", "Keeper", "Controller")
HOSTS = ('"127.0.0.1:2181"', '"zk1:2181,zk2:2181,zk3:2181"', 'os.environ.get("ZK_HOSTS", "localhost:2181")',
         "settings.ZK_HOSTS", 'os.environ["ZOOKEEPER"]', '",".join(ZK_SERVERS)')


def camel(word: str) -> str:
    return "".join(part.capitalize() for part in word.split("_"))


class Names:
    """Fresh, varied identifiers for one file."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: Set[str] = set()

    def word(self) -> str:
        return self.rng.choice(WORDS)

    def unique(self, base: str) -> str:
        name, n = base, 2
        while name in self.used:
            name = f"{base}{n}"
            n += 1
        self.used.add(name)
        return name

    def cls(self) -> str:
        return self.unique(camel(self.word()) + self.rng.choice(NOUNS))

    def func(self, verb: str) -> str:
        return self.unique(f"{verb}_{self.word()}")

    def path(self) -> str:
        parts = [self.word() for _ in range(self.rng.randint(1, 3))]
        return "/" + "/".join(parts)


# ---- retry policies ---------------------------------------------------------------------

def connection_retry(rng: random.Random, imports: Set[str]) -> str:
    """A ``connection_retry=`` argument (or nothing): finite ones are ZK401 findings with a fix."""
    choice = rng.random()
    n = rng.choice((1, 2, 3, 5, 8, 10, 20))
    delay = rng.choice(("0.1", "0.2", "0.5", "1", "1.5"))
    if choice < 0.30:
        return ""
    if choice < 0.45:
        imports.add("from kazoo.retry import KazooRetry")
        return f", connection_retry=KazooRetry(max_tries={n}, delay={delay}, max_delay={rng.randint(5, 60)})"
    if choice < 0.55:
        imports.add("from kazoo.retry import KazooRetry")
        return f", connection_retry=KazooRetry(max_tries=-1, delay={delay}, backoff=2)"
    if choice < 0.63:
        return f', connection_retry={{"max_tries": {n}, "delay": {delay}, "backoff": 2}}'
    if choice < 0.70:
        return f", connection_retry=dict(max_tries=-1, delay={delay})"
    if choice < 0.76:
        return f", max_retries={n}, retry_delay={delay}"
    if choice < 0.82:
        imports.add("from kazoo.retry import KazooRetry")
        return f", connection_retry=KazooRetry(max_tries=-1, delay={delay}, deadline={rng.randint(10, 120)}.0)"
    if choice < 0.90:
        imports.add("from kazoo.retry import KazooRetry")
        return f", connection_retry=KazooRetry(delay={delay})"
    return ", connection_retry=RETRY_POLICY, command_retry=RETRY_POLICY"


def hosts(rng: random.Random, imports: Set[str]) -> str:
    value = rng.choice(HOSTS)
    if "os." in value:
        imports.add("import os")
    if "settings." in value:
        imports.add("from . import settings")
    return value


def client_expr(rng: random.Random, imports: Set[str], hosts_expr: str) -> str:
    style = rng.random()
    if style < 0.7:
        imports.add("from kazoo.client import KazooClient")
        ctor = "KazooClient"
    elif style < 0.85:
        imports.add("import kazoo.client as kc")
        ctor = "kc.KazooClient"
    else:
        imports.add("from kazoo.client import KazooClient as ZkClient")
        ctor = "ZkClient"
    timeout = rng.choice(("", ", timeout=10.0", ", timeout=15", ", timeout=30.0", ", timeout=2.0"))
    return f"{ctor}(hosts={hosts_expr}{timeout}{connection_retry(rng, imports)})"


# ---- snippets ---------------------------------------------------------------------------

SERVICE_CLASS = Template('''

class $Cls:
    """Keeps this $word instance registered under $path and follows its configuration."""

    def __init__(self, hosts, name: str, payload: bytes = b"") -> None:
        self.name = name
        self.payload = payload
        self.zk = $client
        self._config: Dict[str, str] = {}
        self._lost = threading.Event()
        self.zk.add_listener(self.$on_state)

    def $on_state(self, state):
        if state == KazooState.LOST:
            log.warning("$word: session lost, will re-register")
            self._lost.set()
        elif state == KazooState.SUSPENDED:
            log.info("$word: connection suspended")
        else:
            if self._lost.is_set():
                self.zk.handler.spawn(self.register)
                self._lost.clear()

    def start(self) -> None:
        self.zk.start(timeout=$start_timeout)
        self.zk.ensure_path("$path")
        self.register()

    def register(self) -> None:
        node = "$path/" + self.name
        try:
            self.zk.create(node, self.payload, ephemeral=True, makepath=True)
        except NodeExistsError:
            data, stat = self.zk.get(node)
            if stat.ephemeralOwner != self.zk.client_id[0]:
                self.zk.delete(node, version=stat.version)
                self.zk.create(node, self.payload, ephemeral=True)
        log.info("registered %s under $path", self.name)

    def members(self) -> List[str]:
        return sorted(self.zk.get_children("$path", watch=self.$on_members))

    def $on_members(self, event):
        log.debug("membership of $path changed: %s", event)
        self.members()

    def stop(self) -> None:
        self.zk.stop()
        self.zk.close()
''')

WATCHING_CLASS = Template('''

class $Cls:
    def __init__(self, zk, root="$path"):
        self.zk = zk
        self.root = root
        self.values = {}
        self.children = []

    def follow(self):
        @self.zk.DataWatch(self.root + "/config")
        def $on_data(data, stat, event=None):
            if data is None:
                log.info("no configuration at %s yet", self.root)
                return
            self.values = json.loads(data.decode("utf-8"))
            log.info("configuration version %s", stat.version)

        @self.zk.ChildrenWatch(self.root + "/members", send_event=$send_event)
        def $on_children(children$event_arg):
            self.children = sorted(children)
            log.info("%d members", len(children))

    def value(self, key, default=None):
        return self.values.get(key, default)
''')

RECIPE_WATCH = Template('''

def $watch_func(client, path="$path"):
    """Mirror the node at `path` into a local dict."""
    state = {}

    def $on_change(data, stat):
        if data is not None:
            state["value"] = data
            state["version"] = stat.version
        return True

    DataWatch(client, path, $on_change)
    ChildrenWatch(client, path, func=lambda children: state.update(children=children), allow_session_lost=$allow)
    return state
''')

SCRIPT_MAIN = Template('''

def $parse(argv=None):
    parser = argparse.ArgumentParser(description="$word maintenance")
    parser.add_argument("--hosts", default=$default_hosts)
    parser.add_argument("--root", default="$path")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser.parse_args(argv)


def $main(argv=None):
    args = $parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    zk = $client
    zk.start()
    try:
        for child in zk.get_children(args.root):
            data, stat = zk.get(f"{args.root}/{child}")
            if stat.numChildren == 0 and not data:
                if args.dry_run:
                    print("would delete", child)
                else:
                    zk.delete(f"{args.root}/{child}", version=stat.version)
        zk.ensure_path(args.root + "/last-run")
        zk.set(args.root + "/last-run", str(time.time()).encode())
    finally:
        zk.stop()
        zk.close()
    return 0
''')

SCRIPT_NO_STOP = Template('''

def $main():
    zk = $client
    zk.start()
    value, _ = zk.get("$path")
    print(value.decode())
''')

MODULE_CLIENT = Template('''

$var = $client
$var.start()
atexit.register($var.stop)


def $read(path="$path"):
    data, stat = $var.get(path)
    return data, stat.mzxid


def $write(path, value):
    $var.ensure_path(path)
    return $var.set(path, value)
''')

TRANSACTION = Template('''

def $move(zk, source, target, value=b""):
    """Move a node atomically: create the target, delete the source."""
    tx = zk.transaction()
    tx.check(source, $version)
    tx.create(target, value)
    tx.delete(source)
    results = tx.commit()
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        raise failures[0]
    return results


def $bump(zk, path="$path"):
    with zk.transaction() as tx:
        tx.set_data(path, b"1")
        tx.create(path + "/stamp-", b"", sequence=True)
''')

LOCKS = Template('''

def $with_lock(zk, job_id, work):
    lock = zk.Lock("$path/locks/" + job_id, identifier=socket.gethostname())
    if not lock.acquire(timeout=$lock_timeout):
        log.warning("job %s is locked elsewhere", job_id)
        return None
    try:
        return work()
    finally:
        lock.release()


def $elect(zk, leader_work):
    election = zk.Election("$path/election", socket.gethostname())
    election.run(leader_work)


def $count(zk):
    counter = zk.Counter("$path/counter")
    counter += 1
    return counter.value
''')

RETRY_HELPERS = Template('''

RETRY_POLICY = KazooRetry(max_tries=$tries, delay=$delay, backoff=2, max_delay=$max_delay)


def $fetch(zk, path):
    return zk.retry(zk.get, path)


def $with_retries(zk, path, attempts=$attempts):
    for attempt in range(attempts):
        try:
            return zk.get_children(path)
        except ConnectionLoss:
            log.info("connection loss on %s, attempt %d", path, attempt)
            time.sleep(0.5 * (attempt + 1))
    raise RuntimeError("gave up on " + path)


def $sequential(zk, path="$path"):
    return zk.retry(zk.create, path + "/job-", b"", ephemeral=True, sequence=True)
''')

ASYNC_OPS = Template('''

class $Cls:
    def __init__(self, zk):
        self.zk = zk
        self.pending = 0

    def $on_done(self, async_result):
        self.pending -= 1
        try:
            data, stat = async_result.get()
        except NoNodeError:
            return
        log.debug("read %d bytes (version %d)", len(data), stat.version)

    def read_all(self, paths):
        for path in paths:
            self.pending += 1
            self.zk.get_async(path).rawlink(self.$on_done)

    def connect(self, timeout=$start_timeout):
        event = self.zk.start_async()
        event.wait(timeout=timeout)
        if not self.zk.connected:
            raise RuntimeError("could not connect to ZooKeeper")
''')

TREE_CACHE = Template('''

def $cache(zk, root="$path"):
    cache = TreeCache(zk, root)

    def $on_event(event):
        if event.event_type == TreeEvent.NODE_ADDED:
            log.info("added %s", event.event_data.path)
        elif event.event_type == TreeEvent.NODE_REMOVED:
            log.info("removed %s", event.event_data.path)

    cache.listen($on_event)
    cache.start()
    return cache
''')

FACTORY = Template('''

def $make(hosts=None):
    client = $client
    client.add_listener($listener)
    return client


def $listener(state):
    if state == KazooState.CONNECTED:
        log.info("connected")
    elif state == KazooState.SUSPENDED:
        log.warning("suspended")
''')

PLAIN_DATA = Template('''

@dataclass
class $Cls:
    name: str
    version: int = 0
    tags: List[str] = field(default_factory=list)
    payload: Optional[bytes] = None

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "version": self.version, "tags": self.tags})

    @classmethod
    def from_json(cls, text: str) -> "$Cls":
        raw = json.loads(text)
        return cls(raw["name"], int(raw.get("version", 0)), list(raw.get("tags", [])))

    def bump(self) -> "$Cls":
        return $Cls(self.name, self.version + 1, self.tags + ["v%d" % (self.version + 1)], self.payload)


def $parse_line(line: str) -> Tuple[str, int]:
    key, _, value = line.partition("=")
    key = key.strip().lower()
    try:
        return key, int(value)
    except ValueError:
        return key, -1


def $summarise(records: List[$Cls]) -> Dict[str, int]:
    totals: Dict[str, int] = {}
    for record in records:
        for tag in record.tags or ["untagged"]:
            totals[tag] = totals.get(tag, 0) + record.version
    return {k: v for k, v in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))}
''')

SNIPPETS: List[Tuple[Template, float, Tuple[str, ...]]] = [
    (SERVICE_CLASS, 3.0, ("import threading", "from typing import Dict, List",
                          "from kazoo.exceptions import NodeExistsError", "from kazoo.protocol.states import KazooState")),
    (WATCHING_CLASS, 2.0, ("import json",)),
    (RECIPE_WATCH, 1.0, ("from kazoo.recipe.watchers import ChildrenWatch, DataWatch",)),
    (SCRIPT_MAIN, 1.5, ("import argparse", "import time")),
    (SCRIPT_NO_STOP, 0.7, ()),
    (MODULE_CLIENT, 0.8, ("import atexit",)),
    (TRANSACTION, 1.5, ()),
    (LOCKS, 1.5, ("import socket",)),
    (RETRY_HELPERS, 1.0, ("import time", "from kazoo.exceptions import ConnectionLoss", "from kazoo.retry import KazooRetry")),
    (ASYNC_OPS, 1.2, ("from kazoo.exceptions import NoNodeError",)),
    (TREE_CACHE, 0.8, ("from kazoo.recipe.cache import TreeCache, TreeEvent",)),
    (FACTORY, 1.0, ("from kazoo.protocol.states import KazooState",)),
    (PLAIN_DATA, 2.5, ("import json", "from dataclasses import dataclass, field",
                       "from typing import Dict, List, Optional, Tuple")),
]


def render_snippet(template: Template, rng: random.Random, names: Names, imports: Set[str]) -> str:
    word = names.word()
    values: Dict[str, str] = {
        "word": word,
        "path": names.path(),
        "Cls": names.cls(),
        "start_timeout": rng.choice(("10", "15", "30.0")),
        "send_event": rng.choice(("True", "False")),
        "allow": rng.choice(("True", "True", "False")),
        "version": rng.choice(("-1", "0", "1")),
        "lock_timeout": rng.choice(("5", "10.0", "30", "60")),
        "tries": str(rng.choice((3, 5, 10, -1))),
        "delay": rng.choice(("0.1", "0.5", "1.0")),
        "max_delay": str(rng.choice((10, 30, 60))),
        "attempts": str(rng.randint(2, 6)),
        "var": names.unique(rng.choice(("zk", "client", "ZK", "zookeeper", "_zk"))),
        "default_hosts": rng.choice(('"127.0.0.1:2181"', '"zk:2181"', 'os.environ.get("ZK", "localhost:2181")')),
    }
    values["event_arg"] = ", event" if values["send_event"] == "True" else ""
    for key in ("on_state", "on_members", "on_data", "on_children", "on_change", "on_done", "on_event"):
        values[key] = names.func(key)
    for key in ("watch_func", "parse", "main", "read", "write", "move", "bump", "with_lock", "elect", "count",
                "fetch", "with_retries", "sequential", "cache", "make", "listener", "parse_line", "summarise"):
        values[key] = names.func(key.split("_")[0])
    if "os." in values["default_hosts"]:
        imports.add("import os")
    hosts_expr = "hosts" if template in (SERVICE_CLASS,) else (
        "args.hosts" if template is SCRIPT_MAIN else "hosts or " + hosts(rng, imports) if template is FACTORY
        else hosts(rng, imports))
    values["client"] = client_expr(rng, imports, hosts_expr)
    return template.substitute(values)


def make_file(rng: random.Random, target_lines: int) -> str:
    names = Names(rng)
    imports: Set[str] = {"import logging"}
    parts: List[str] = []
    lines = 0
    templates = [t for t, _, _ in SNIPPETS]
    weights = [w for _, w, _ in SNIPPETS]
    extra = {t: needs for t, _, needs in SNIPPETS}
    while lines < target_lines or not parts:
        template = rng.choices(templates, weights)[0]
        imports.update(extra[template])
        text = render_snippet(template, rng, names, imports)
        parts.append(text)
        lines += text.count("\n")
    body = "".join(parts)
    if "RETRY_POLICY" in body and "RETRY_POLICY =" not in body:
        imports.add("from kazoo.retry import KazooRetry")
        body = "\n\nRETRY_POLICY = KazooRetry(max_tries=-1, delay=0.5)\n" + body
    if "ZK_SERVERS" in body:
        body = '\n\nZK_SERVERS = ["zk1:2181", "zk2:2181"]\n' + body
    doc = f'"""{camel(names.word())} {rng.choice(("service", "tools", "coordination", "workers"))}: generated for zklint benchmarks."""\n'
    plain = sorted(i for i in imports if i.startswith("import "))
    froms = sorted(i for i in imports if i.startswith("from ") and not i.startswith("from ."))
    local = sorted(i for i in imports if i.startswith("from ."))
    header = doc + "\n".join(plain) + "\n\n" + "\n".join(froms) + ("\n\n" + "\n".join(local) if local else "") + "\n"
    return header + "\nlog = logging.getLogger(__name__)\n" + body


def generate(outdir: str, total_lines: int, seed: int = 7) -> Tuple[int, int]:
    """Write the tree; return (files, lines)."""
    rng = random.Random(seed)
    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    written = lines = 0
    while lines < total_lines:
        package = os.path.join(outdir, f"{rng.choice(WORDS)}_{written // 25:03d}")
        os.makedirs(package, exist_ok=True)
        target = int(rng.lognormvariate(5.6, 0.5))  # median ~270 lines, a long tail
        target = max(60, min(target, 1500))
        text = make_file(rng, target)
        ast.parse(text)  # every file must be valid Python
        name = f"{rng.choice(WORDS)}_{rng.choice(('service', 'client', 'watch', 'jobs', 'admin', 'util'))}_{written:04d}.py"
        with open(os.path.join(package, name), "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        written += 1
        lines += text.count("\n")
    return written, lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--lines", type=int, default=200_000, help="at least this many lines in total")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    files, lines = generate(args.outdir, args.lines, args.seed)
    print(f"{args.outdir}: {files} files, {lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
