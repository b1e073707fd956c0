"""Finding the files to check: the walk's order, its excludes and .gitignore files, links.

`discover` is called directly on small trees; tests/test_cli.py covers the same rules
through the command line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import pytest

from zklint.files import DEFAULT_EXCLUDES, Excluder, compile_pattern, discover, list_files, unchanged


def touch(root: Path, *relatives: str) -> None:
    for relative in relatives:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")


def found(paths: Sequence[str], root: str = ".", excludes: Sequence[str] = (),
          gitignore: bool = True) -> List[Tuple[str, Optional[str]]]:
    return list(discover(list(paths), Excluder(root, list(excludes), gitignore)))


def names(paths: Sequence[str], **kwargs) -> List[str]:
    result = found(paths, **kwargs)
    assert all(problem is None for _, problem in result), result
    return [path for path, _ in result]


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_directory_s_files_by_name_then_its_subdirectories_by_name(tree):
    touch(tree, "b.py", "a.py", "z/a.py", "m/b.py", "m/a.py", "m/n/a.py", "c.pyi", "d.txt")
    assert names(["."]) == ["./a.py", "./b.py", "./c.pyi", "./m/a.py", "./m/b.py", "./m/n/a.py", "./z/a.py"]


def test_a_file_reached_twice_is_found_once_under_its_first_path(tree):
    touch(tree, "pkg/mod.py", "pkg/sub/inner.py")
    (tree / "pkg" / "alias.py").symlink_to(tree / "pkg" / "mod.py")
    (tree / "linked").symlink_to(tree / "pkg", target_is_directory=True)
    # the link to a file comes first by name; the link to a directory is not followed
    assert names(["."]) == ["./pkg/alias.py", "./pkg/sub/inner.py"]
    # a directory named through a link and directly: each file once, under the first name
    assert names(["linked", "pkg", "pkg/sub/inner.py"]) == ["linked/alias.py", "linked/sub/inner.py"]
    assert names(["pkg/sub", "pkg", str(tree / "pkg")]) == ["pkg/sub/inner.py", "pkg/alias.py"]


def test_hard_links_are_two_files(tree):
    touch(tree, "a.py")
    os.link(tree / "a.py", tree / "b.py")
    assert names(["."]) == ["./a.py", "./b.py"]


def test_links_that_lead_nowhere_are_reported_and_fifos_passed_over(tree):
    touch(tree, "ok.py")
    (tree / "dangling.py").symlink_to(tree / "missing.py")
    (tree / "loop.py").symlink_to(tree / "loop.py")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tree / "pipe.py")
    result = dict(found(["."]))
    assert result.pop("./dangling.py") == "broken symbolic link"
    assert result.pop("./loop.py").startswith("cannot read: ")
    assert result == {"./ok.py": None}


def test_virtualenvs_are_skipped_unless_named(tree):
    touch(tree, "app.py", "env/lib/inner.py", "notenv/inner.py")
    (tree / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tree / "notenv" / "pyvenv.cfg").symlink_to(tree / "missing.cfg")  # leads nowhere: not a virtualenv
    assert names(["."]) == ["./app.py", "./notenv/inner.py"]
    assert names(["env"]) == ["env/lib/inner.py"]


def test_default_directories_are_skipped_at_any_depth_by_name(tree):
    touch(tree, "src/build/a.py", "src/x.egg-info/a.py", "src/builds/a.py", "src/node_modules/a.py")
    assert names(["."]) == ["./src/builds/a.py"]
    # they are names: the walk may decide by the name alone (see files._is_default_dir)
    assert not any(compile_pattern(text).whole_path for text in DEFAULT_EXCLUDES)


def test_configured_excludes(tree):
    touch(tree, "gen.py", "gen/a.py", "app/gen/b.py", "app/gen.py", "app/main.py", "lib/x/gen.py")
    assert names(["."], excludes=["gen/"]) == ["./gen.py", "./app/gen.py", "./app/main.py", "./lib/x/gen.py"]
    assert names(["."], excludes=["/gen"]) == ["./gen.py", "./app/gen.py", "./app/main.py", "./app/gen/b.py",
                                               "./lib/x/gen.py"]
    assert names(["."], excludes=["app/*.py", "!app/main.py"]) == [
        "./gen.py", "./app/main.py", "./app/gen/b.py", "./gen/a.py", "./lib/x/gen.py"]
    assert names(["."], excludes=["lib/**/gen.py"]) == [
        "./gen.py", "./app/gen.py", "./app/main.py", "./app/gen/b.py", "./gen/a.py"]


def test_unanchored_patterns_that_can_match_a_slash_are_tried_on_the_whole_path(tree):
    touch(tree, "gen/sub/x.py", "other/y.py")
    assert names(["."], excludes=["gen**.py"]) == ["./other/y.py"]
    assert names(["."], excludes=["gen[!a]sub"]) == ["./other/y.py"]


def test_configured_excludes_are_relative_to_the_settings_root(tree):
    touch(tree, "proj/gen.py", "proj/app/gen.py", "proj/keep.py", "other/gen.py", "other/keep.py")
    # walking above the root, beside it, and the root itself from elsewhere
    assert names(["."], root="proj", excludes=["/gen.py"]) == [
        "./other/gen.py", "./other/keep.py", "./proj/keep.py", "./proj/app/gen.py"]
    assert names(["other"], root="proj", excludes=["gen.py"]) == ["other/gen.py", "other/keep.py"]
    assert names([str(tree / "proj")], root=str(tree / "proj"), excludes=["app/"]) == [
        str(tree / "proj" / "gen.py"), str(tree / "proj" / "keep.py")]


def _repository(tree: Path) -> None:
    (tree / ".git").mkdir()


def test_nested_gitignore_files_and_re_inclusion(tree):
    _repository(tree)
    touch(tree, "gen_a.py", "gen_ok.py", "sub/gen_b.py", "sub/gen_ok.py", "sub/deep/gen_ok.py", "sub/deep/gen_c.py")
    (tree / ".gitignore").write_text("gen_*.py\n")
    (tree / "sub" / ".gitignore").write_text("!gen_ok.py\n")
    assert names(["."]) == ["./sub/gen_ok.py", "./sub/deep/gen_ok.py"]
    assert names(["."], gitignore=False) == [
        "./gen_a.py", "./gen_ok.py", "./sub/gen_b.py", "./sub/gen_ok.py", "./sub/deep/gen_c.py",
        "./sub/deep/gen_ok.py"]


def test_a_gitignore_s_directory_patterns(tree):
    _repository(tree)
    touch(tree, "out/a.py", "out.py", "src/out/b.py", "src/main.py", "src/gen/c.py", "gen/d.py")
    (tree / ".gitignore").write_text("out/\n/gen\n")
    assert names(["."]) == ["./out.py", "./src/main.py", "./src/gen/c.py"]


def test_gitignore_files_above_the_walked_directory_up_to_the_repository_root(tree):
    touch(tree, "repo/app/skip.py", "repo/app/keep.py", "repo/app/pkg/skip.py", "repo/app/pkg/other.py")
    (tree / ".gitignore").write_text("other.py\n")  # above the repository: means nothing
    _repository(tree / "repo")
    (tree / "repo" / ".gitignore").write_text("skip.py\n")
    assert names(["repo/app"]) == ["repo/app/keep.py", "repo/app/pkg/other.py"]
    assert names(["repo/app/pkg"]) == ["repo/app/pkg/other.py"]
    # outside a repository no .gitignore file above the walk counts
    touch(tree, "plain/app/skip.py")
    (tree / "plain" / ".gitignore").write_text("skip.py\n")
    assert names(["plain/app"]) == ["plain/app/skip.py"]


def test_a_trailing_slash_does_not_change_what_the_walk_finds(tree):
    touch(tree, "app/main.py", "app/skip.py", "app/sub/skip.py", "app/sub/keep.py")
    (tree / "app" / ".gitignore").write_text("skip.py\n")
    assert names(["app"]) == ["app/main.py", "app/sub/keep.py"]
    assert names(["app/"]) == ["app/main.py", "app/sub/keep.py"]


def test_files_named_explicitly(tree):
    _repository(tree)
    touch(tree, "skip.py", "gen/a.py", "b.py")
    (tree / ".gitignore").write_text("skip.py\n")
    (tree / "dangling.py").symlink_to(tree / "missing.py")
    result = found(["skip.py", "gen/a.py", "b.py", "./b.py", "dangling.py", "nothing.py"], excludes=["gen"])
    assert result == [("skip.py", None), ("b.py", None), ("dangling.py", "broken symbolic link"),
                      ("nothing.py", "no such file or directory")]


# ---- a walk kept for the next process (the flake8 plugin and the language server) ------------

def _age(root: Path, seconds: float = 60.0) -> None:
    """Set every directory's and file's modification time `seconds` back: a walk kept right
    after its directories changed would not be reused (the file system's clock tick)."""
    past = int((time.time() - seconds) * 1e9)
    for path in [root, *root.rglob("*")]:
        os.utime(path, ns=(past, past), follow_symlinks=False)


def _listing(root: Path):
    return list_files(str(root), Excluder(str(root), [], True))


def test_a_kept_walk_finds_what_a_walk_finds_until_a_directory_it_listed_changes(tree):
    _repository(tree)
    touch(tree, "a.py", "pkg/b.py", "pkg/deep/c.py", "notes.txt")
    _age(tree)
    listing = _listing(tree)
    assert listing.files == names([str(tree)])
    assert listing.reusable and unchanged(listing.depends_on)
    touch(tree, "pkg/deep/new.py")  # a file added: its directory's time changes
    assert not unchanged(listing.depends_on)
    _age(tree)
    again = _listing(tree)
    assert str(tree / "pkg" / "deep" / "new.py") in again.files and unchanged(again.depends_on)
    (tree / "pkg" / "deep" / "new.py").rename(tree / "pkg" / "deep" / "renamed.py")
    assert not unchanged(again.depends_on)


def test_a_kept_walk_depends_on_the_gitignore_files_it_read_and_looked_for(tree):
    _repository(tree)
    touch(tree, "app/keep.py", "app/gen.py")
    (tree / "app" / ".gitignore").write_text("gen.py\n")
    _age(tree)
    listing = _listing(tree / "app")
    assert listing.files == [str(tree / "app" / "keep.py")]
    assert unchanged(listing.depends_on)
    # edited in place, its directory's time put back: the file's own size and time tell
    (tree / "app" / ".gitignore").write_text("nothing.py\n")
    _age(tree)
    assert not unchanged(listing.depends_on)
    listing = _listing(tree / "app")
    assert unchanged(listing.depends_on)
    # a .gitignore made above the walked directory (inside the repository) counts too
    (tree / ".gitignore").write_text("keep.py\n")
    _age(tree)
    assert not unchanged(listing.depends_on)


def test_a_walk_that_met_a_link_or_a_fresh_directory_is_not_kept(tree):
    # (in a repository: outside one, every directory up to / is looked in for a .git,
    # and a busy one like /tmp keeps the walk from being kept)
    _repository(tree)
    touch(tree, "a.py")
    _age(tree)
    assert _listing(tree).reusable
    touch(tree, "fresh/b.py")  # modified a moment ago
    assert not _listing(tree).reusable
    _age(tree)
    (tree / "alias.py").symlink_to(tree / "a.py")
    _age(tree)
    assert not _listing(tree).reusable  # where a link leads may change with no directory changing
