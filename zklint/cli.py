"""The ``zklint`` command: a thin layer of argument parsing, file I/O and printing."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from zklint import __version__
from zklint.checking import CacheOptions, Job, check_files, facts_for_file
from zklint.config import ConfigError, PyprojectFinder, Settings, load_settings, split_codes
from zklint.engine import FileReport, RuleSelection, UnknownSelector, check_bytes
from zklint.files import Excluder, discover
from zklint.project.cache import CACHE_ENV
from zklint.rules import all_rules

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
SUBCOMMANDS = ("check", "rule", "server")

EPILOG = """\
examples:
  zklint check .                      lint every Python file below here
  zklint check --fix src/             apply safe fixes in place
  zklint check --fix --unsafe-fixes   also apply fixes that change control flow
  zklint check --diff app.py          show what --fix would change, write nothing
  zklint check --select ZK4 --ignore ZK402 .
  cat app.py | zklint check - --stdin-filename app.py
  zklint check --statistics .         the number of findings per rule
  zklint rule ZK401                   what a rule finds, why, and how to fix it
  zklint server                       the language server for editors (pip install "zklint[server]")
  zklint check --output-format concise src/
  zklint check --output-format sarif . > zklint.sarif
  zklint check --output-format github .
  zklint check --output-format gitlab . > gl-code-quality-report.json

colour: only on a terminal; NO_COLOR=1 turns it off, FORCE_COLOR=1 forces it on.

exit status: 0 no findings, 1 findings remain, 2 a usage, configuration or I/O error
(a file that cannot be read or parsed is reported on stderr and the others are still checked).
"""

RULE_EPILOG = """\
examples:
  zklint rule ZK401                   what it finds, why it is bad, example, fix safety, options
  zklint rule --all                   every rule with its fix (safe, unsafe or none)
  zklint rule --write-docs docs/rules   the same pages as Markdown files (python -m zklint.docs)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zklint",
        description="Find and fix ZooKeeper (kazoo) hazards in Python code.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zklint {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser("check", help="lint files (the default command)", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: .); - reads stdin")
    fixing = check.add_argument_group("fixing")
    fixing.add_argument("--fix", action="store_true", help="apply safe fixes in place")
    fixing.add_argument("--unsafe-fixes", action="store_true", help="with --fix or --diff, also apply unsafe fixes")
    fixing.add_argument("--diff", action="store_true", help="print the fixes as a unified diff; write nothing")
    fixing.add_argument("--show-fixes", action="store_true", help="list the fixes applied")
    rules = check.add_argument_group("rule selection")
    rules.add_argument("--select", action="append", metavar="CODES",
                       help="comma-separated code prefixes to enable (replaces the configured list)")
    rules.add_argument("--extend-select", action="append", metavar="CODES", help="code prefixes to enable in addition")
    rules.add_argument("--ignore", action="append", metavar="CODES", help="code prefixes to disable")
    files = check.add_argument_group("files")
    files.add_argument("--exclude", action="append", metavar="PATTERNS",
                       help="gitignore-style patterns to skip (replaces the configured list)")
    files.add_argument("--extend-exclude", action="append", metavar="PATTERNS", help="patterns to skip in addition")
    files.add_argument("--no-respect-gitignore", action="store_true", help="do not skip files .gitignore lists")
    files.add_argument("--stdin-filename", metavar="PATH", help="the name of the file read from stdin")
    files.add_argument("--config", metavar="PYPROJECT",
                       help="use this pyproject.toml for every file instead of the one nearest to each")
    caching = check.add_argument_group("cache")
    caching.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    caching.add_argument("--cache-dir", metavar="DIR",
                         help=f"where the cache lives (default: ${CACHE_ENV}, "
                              "else .zklint_cache/ at each project root)")
    output = check.add_argument_group("output")
    output.add_argument("--exit-zero", action="store_true", help="exit 0 even when findings remain")
    output.add_argument("-q", "--quiet", action="store_true", help="print findings only, no summary")
    output.add_argument("-j", "--jobs", type=int, default=0, metavar="N",
                        help="processes to use (default: the number of cores)")
    output.add_argument("--output-format", choices=output_formats(), default="full", metavar="FORMAT",
                        help="full (default: each finding with its source line), concise (one line each), json, "
                             "sarif (SARIF 2.1.0), github (Actions annotations), gitlab (Code Quality report)")
    output.add_argument("--statistics", action="store_true",
                        help="print the number of findings per rule instead of the findings")
    output.add_argument("--show-source", action=argparse.BooleanOptionalAction, default=True,
                        help="with --output-format full, show the source line under each finding (default: on)")
    rule = commands.add_parser("rule", help="explain a rule", formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog=RULE_EPILOG)
    rule.add_argument("code", nargs="?", help="a rule code, e.g. ZK401")
    rule.add_argument("--all", action="store_true", help="list every rule: code, name, fix and its safety")
    rule.add_argument("--write-docs", metavar="DIR", help="write DIR/ZKnnn.md for every rule (the docs/rules pages)")
    commands.add_parser("server", help="run the language server (LSP over stdio) for editors",
                        description="The Language Server Protocol over stdin/stdout: diagnostics, quick fixes "
                                    "and hover in your editor. Needs the server extra: pip install \"zklint[server]\".")
    return parser


def output_formats() -> Tuple[str, ...]:
    from zklint.output import FORMATS

    return FORMATS


def _normalise_argv(argv: Sequence[str]) -> List[str]:
    """``zklint PATHS`` and ``zklint --fix PATHS`` mean ``zklint check ...``."""
    argv = list(argv)
    if not argv:
        return ["check"]
    first = argv[0]
    if first in SUBCOMMANDS or first in ("-h", "--help", "--version"):
        return argv
    return ["check"] + argv


class _SettingsResolver:
    """Each file's settings: `[tool.zklint]` of the pyproject.toml nearest to it (as ruff
    does), or the one --config names, with the command line's flags on top."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._pyprojects = PyprojectFinder()
        self._by_config: Dict[Optional[str], Settings] = {}
        self._by_directory: Dict[str, Settings] = {}  # by the directory part of a path, as given
        self._excluders: Dict[int, Excluder] = {}  # by id of the settings

    def default(self) -> Settings:
        """The settings of the current directory (or --config): file discovery's excludes."""
        return self._load(self.args.config or self._pyprojects.find("."))

    def for_path(self, path: str) -> Settings:
        if self.args.config:
            return self.default()
        directory = os.path.dirname(path)  # as given: "" is the current directory
        found = self._by_directory.get(directory)
        if found is None:
            found = self._by_directory[directory] = self._load(self._pyprojects.find(directory))
        return found

    def excluder(self, settings: Settings) -> Excluder:
        found = self._excluders.get(id(settings))
        if found is None:
            found = self._excluders[id(settings)] = _excluder(settings)
        return found

    def _load(self, config: Optional[str]) -> Settings:
        settings = self._by_config.get(config)
        if settings is None:
            settings = self._by_config[config] = _with_flags(load_settings(config), self.args)
        return settings


def _with_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    for name in ("select", "ignore", "extend_select"):
        values = split_codes(getattr(args, name))
        if values is not None:
            if name == "select":
                settings.select = values
            else:
                setattr(settings, name, getattr(settings, name) + values)
    if args.exclude is not None:
        settings.exclude = [p for value in args.exclude for p in value.split(",") if p]
    if args.extend_exclude is not None:
        settings.extend_exclude += [p for value in args.extend_exclude for p in value.split(",") if p]
    if args.no_respect_gitignore:
        settings.respect_gitignore = False
    return settings


def _excluder(settings: Settings) -> Excluder:
    return Excluder(settings.root, settings.exclude + settings.extend_exclude, settings.respect_gitignore)


def _selection(settings: Settings, extra_ignore: Sequence[str] = ()) -> RuleSelection:
    # per-file-ignores (extra_ignore) remove codes outright, whatever --select says.
    return RuleSelection(settings.select, settings.ignore, settings.extend_select, per_file_ignore=extra_ignore)


def check_command(args: argparse.Namespace) -> int:
    from zklint import output

    # Each file's tree and model are freed by reference counting (they hold no cycles), but
    # building them allocates millions of objects: with the default thresholds the cyclic
    # collector ran often enough over the project's summaries to cost a quarter of a cold
    # run (bench/README.md). Rarer collections keep the same peak memory.
    gc.set_threshold(50_000, 20, 20)

    out, err = sys.stdout, sys.stderr
    resolver = _SettingsResolver(args)
    try:
        settings = resolver.default()
        _selection(settings)  # unknown selectors are a usage error, before any file is read
    except (ConfigError, UnknownSelector) as exc:
        err.write(f"zklint: error: {exc}\n")
        return EXIT_ERROR
    if args.jobs < 0:
        err.write("zklint: error: --jobs must be 0 (all cores) or more\n")
        return EXIT_ERROR
    paths = args.paths or ["."]
    if "-" in paths:
        if len(paths) > 1:
            err.write("zklint: error: '-' (stdin) cannot be combined with other paths\n")
            return EXIT_ERROR
        return _check_stdin(args, settings, out, err)

    excluder = resolver.excluder(settings)
    edits = _wants_edits(args)
    jobs: List[Job] = []
    walked_from: Dict[str, Optional[str]] = {}
    errors: List[Tuple[str, str]] = []
    selections: Dict[Tuple[int, Tuple[str, ...]], Tuple[str, ...]] = {}
    # the directories named on the command line: a file found in one was walked from it
    walked_dirs = [(given, os.path.join(given, "")) for given in paths if os.path.isdir(given)]
    for path, problem in discover(paths, excluder):
        if problem is not None:
            errors.append((path, problem))
            continue
        try:
            file_settings = resolver.for_path(path)
            if file_settings is not settings and resolver.excluder(file_settings).excluded_with_parents(path):
                continue  # a nested pyproject.toml excludes it
            ignored = tuple(file_settings.ignored_for(path))
            selection = (id(file_settings), ignored)
            if selection not in selections:
                selections[selection] = tuple(_selection(file_settings, ignored).codes)
        except (ConfigError, UnknownSelector) as exc:
            errors.append((path, str(exc)))
            continue
        walked_from[path] = next((given for given, prefix in walked_dirs if path.startswith(prefix)), None)
        jobs.append(Job(path, selections[selection], file_settings.options, args.fix, args.unsafe_fixes,
                        args.diff, edits=edits))
    # --diff promises to write nothing: it reads the cache but leaves it as it was.
    cache = CacheOptions(enabled=not args.no_cache, directory=args.cache_dir, write=not args.diff)
    reports = check_files(jobs, walked_from, excluder, args.jobs or os.cpu_count() or 1, cache)
    for report in reports:
        errors.extend((report.path, message) for message in report.errors)

    if args.diff:
        for report in reports:
            if report.new_text is not None:
                output.write_diff(report, out)
    else:
        _write_findings(args, reports, out)
    if args.show_fixes and args.fix and not args.diff:
        output.write_fixed(reports, err)
    for path, message in errors:
        err.write(f"{path}: error: {message}\n")
    if not args.quiet and (args.diff or args.output_format in output.TEXT_FORMATS):
        if args.diff:
            would = sum(len(r.fixed) for r in reports)
            (err if would else out).write(
                f"Would fix {would} error{'s' if would != 1 else ''}.\n" if would else "No fixes available.\n"
            )
        else:
            for line in output.summary(reports, args.fix, args.unsafe_fixes):
                out.write(line + "\n")
    if errors:
        return EXIT_ERROR
    if args.exit_zero:
        return EXIT_CLEAN
    if args.diff:
        return EXIT_FINDINGS if any(r.fixed for r in reports) else EXIT_CLEAN
    return EXIT_FINDINGS if any(r.findings for r in reports) else EXIT_CLEAN


def _wants_edits(args: argparse.Namespace) -> bool:
    from zklint.output import EDIT_FORMATS

    return args.output_format in EDIT_FORMATS and not args.statistics


def _write_findings(args: argparse.Namespace, reports: List[FileReport], out) -> None:
    """The findings (or, with --statistics, their counts) in the chosen --output-format."""
    from zklint import output

    if args.statistics:
        output.write_statistics(reports, out, args.output_format, args.unsafe_fixes)
    else:
        output.write_report(reports, out, args.output_format, args.show_source, output.use_color(out))


def _check_stdin(args, settings: Settings, out, err) -> int:
    """Lint stdin; with --fix the fixed source goes to stdout and findings to stderr."""
    from zklint import output

    name = args.stdin_filename or "-"
    raw = sys.stdin.buffer.read()
    ignored = settings.ignored_for(name) if args.stdin_filename else []
    codes = _selection(settings, ignored).rules()
    facts = None
    if args.stdin_filename:
        # the text stands in for that file of its project, as an editor's buffer does
        facts = facts_for_file(args.stdin_filename, raw, use_cache=not args.no_cache)
    report = check_bytes(raw, name, codes, settings.options, fix=args.fix or args.diff, unsafe_fixes=args.unsafe_fixes,
                         facts=facts)
    for message in report.errors:
        err.write(f"{name}: error: {message}\n")
    if not args.diff:
        output.annotate(report, report.new_bytes if report.new_bytes is not None else raw, _wants_edits(args))
    if args.diff:
        if report.new_text is not None:
            output.write_diff(report, out)
    elif args.fix:
        sys.stdout.flush()
        sys.stdout.buffer.write(report.new_bytes if report.new_bytes is not None else raw)
        sys.stdout.flush()
        _write_findings(args, [report], err)
    else:
        _write_findings(args, [report], out)
        if not args.quiet and args.output_format in output.TEXT_FORMATS:
            for line in output.summary([report], False, args.unsafe_fixes):
                out.write(line + "\n")
    if report.errors:
        return EXIT_ERROR
    if args.exit_zero:
        return EXIT_CLEAN
    if args.diff:
        return EXIT_FINDINGS if report.fixed else EXIT_CLEAN
    return EXIT_FINDINGS if report.findings else EXIT_CLEAN


def rule_command(args: argparse.Namespace) -> int:
    from zklint import docs

    registry = all_rules()
    if args.write_docs:
        for path in docs.write_docs(args.write_docs):
            print(f"updated {path}")
        return EXIT_CLEAN
    if args.all or not args.code:
        for line in docs.rule_table(registry):
            print(line)
        return EXIT_CLEAN
    code = args.code.upper()
    if code not in registry:
        sys.stderr.write(f"zklint: error: unknown rule {args.code!r}\n")
        return EXIT_ERROR
    from zklint.docs import rule_markdown

    print(rule_markdown(registry[code]))
    return EXIT_CLEAN


SERVER_EXTRA = ("pygls", "lsprotocol", "cattrs", "attrs")


def server_command() -> int:
    try:
        from zklint.server import serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_EXTRA:
            raise
        sys.stderr.write('zklint: error: the language server needs the server extra: pip install "zklint[server]"\n')
        return EXIT_ERROR
    return serve()


def run() -> None:
    """The ``zklint`` command (and ``python -m zklint``): `main`, then leave at once.

    What was written is flushed, and the process exits without tearing the interpreter
    down: freeing one by one every object a large run holds (the project's summaries,
    the reports) took about 0.1 s of a 2.7 s run, and the system frees the memory at
    once anyway. `main` itself returns normally (tests and embedders call it).
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader went away (`zklint check | head`): nothing to say
            pass
        except ValueError:  # closed already (the language server's client closes stdout)
            pass
        except OSError:
            code = code or EXIT_ERROR
    os._exit(code)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_normalise_argv(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "rule":
            return rule_command(args)
        if args.command == "server":
            return server_command()
        return check_command(args)
    except KeyboardInterrupt:
        sys.stderr.write("zklint: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_CLEAN
