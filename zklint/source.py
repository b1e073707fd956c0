"""A Python source file as bytes and text, with the position arithmetic rules and the fixer share.

Positions from `ast` are (1-based line, UTF-8 byte column); edits work on character
offsets into the decoded text. Decoding keeps everything needed to write the file back
byte for byte: the encoding (``utf-8-sig`` when there is a BOM) and the original line
endings (the text is never newline-translated).
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from itertools import accumulate
from typing import List, Optional

_NEWLINE = re.compile(r"\r\n|\r|\n")


class SourceError(Exception):
    """The file cannot be read as Python source; the message is one line for the user."""


# CPython before 3.11 turns the parse tree into `ast` objects by unbounded C recursion: an
# expression nested tens of thousands of levels deep (`x = 1 + 1 + ... + 1`, `a.b.b...`)
# overflows the C stack and kills the whole process, where 3.11+ raises RecursionError.
# Measured on 3.9: about 100 bytes of stack per level, and every level takes at least two
# characters of source. Short sources cannot get that deep; longer ones are parsed on a
# thread whose stack is sized for the worst the text could hold.
_MAIN_STACK_CHARS = 8_000  # at most 4,000 levels: under 0.5 MB of stack
_STACK_BYTES_PER_CHAR = 128
_MAX_STACK_BYTES = 2 << 30


def parse_module(text: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse``, without the interpreter crash of Python < 3.11 on very deep nesting.

    Raises what ``ast.parse`` raises (SyntaxError, ValueError, RecursionError, MemoryError);
    on Python < 3.11 a source too large to parse safely raises MemoryError.
    """
    if sys.version_info >= (3, 11) or len(text) <= _MAIN_STACK_CHARS:
        return ast.parse(text, filename=filename)
    return _parse_on_a_large_stack(text, filename)


def _parse_on_a_large_stack(text: str, filename: str) -> ast.Module:
    import threading

    stack = max(64 << 20, len(text) * _STACK_BYTES_PER_CHAR)
    if stack > _MAX_STACK_BYTES:
        raise MemoryError("too large to parse safely on Python < 3.11")
    outcome: dict = {}

    def parse() -> None:
        try:
            outcome["tree"] = ast.parse(text, filename=filename)
        except BaseException as exc:  # handed to the calling thread as it is
            outcome["error"] = exc

    previous = threading.stack_size(stack)
    try:
        worker = threading.Thread(target=parse, name="zklint-parse")
        worker.start()
    finally:
        threading.stack_size(previous)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["tree"]


def decode_source(raw: bytes) -> tuple[str, str]:
    """Return (text, encoding) following PEP 263 and the BOM, as the interpreter would."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError as exc:
        message = " ".join(str(exc).split())
        if message.startswith("invalid or missing encoding declaration"):
            # The first two lines are not UTF-8 and name no encoding: usually a binary file.
            message = "cannot decode: not UTF-8 and no encoding declaration (a binary file?)"
        raise SourceError(message) from None
    try:
        return raw.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"cannot decode as {encoding}: byte {exc.start} ({raw[exc.start:exc.start + 1]!r})"
        ) from None
    except LookupError:
        raise SourceError(f"unknown encoding: {encoding}") from None


class SourceFile:
    """Decoded source text plus a line table."""

    def __init__(self, text: str, path: str = "<stdin>", encoding: str = "utf-8") -> None:
        self.text = text
        self.path = path
        self.encoding = encoding
        self._line_starts: Optional[List[int]] = None

    @classmethod
    def from_bytes(cls, raw: bytes, path: str) -> "SourceFile":
        text, encoding = decode_source(raw)
        return cls(text, path, encoding)

    def encode(self, text: Optional[str] = None) -> bytes:
        return (self.text if text is None else text).encode(self.encoding)

    @property
    def line_starts(self) -> List[int]:
        if self._line_starts is None:
            text = self.text
            if "\r" not in text:  # the common case, without a regex match object per line
                ends = map((1).__add__, map(len, text.split("\n")[:-1]))
                starts = list(accumulate(ends, initial=0))
            else:
                starts = [0]
                starts.extend(m.end() for m in _NEWLINE.finditer(text))
            self._line_starts = starts
        return self._line_starts

    def line_text(self, lineno: int) -> str:
        """The line without its line ending (1-based)."""
        starts = self.line_starts
        start = starts[lineno - 1]
        end = starts[lineno] if lineno < len(starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def line_ending(self, lineno: int) -> str:
        starts = self.line_starts
        start = starts[lineno - 1]
        end = starts[lineno] if lineno < len(starts) else len(self.text)
        line = self.text[start:end]
        return line[len(line.rstrip("\r\n")):]

    @property
    def newline(self) -> str:
        """The file's dominant line ending (of its first line), for generated lines."""
        match = _NEWLINE.search(self.text)
        return match.group() if match else "\n"

    def char_col(self, lineno: int, byte_col: int) -> int:
        if self.text.isascii():  # (a flag of the string, not a scan): no line to look at
            return byte_col
        line = self.line_text(lineno)
        if line.isascii():
            return byte_col
        return len(line.encode("utf-8")[:byte_col].decode("utf-8", "replace"))

    def offset(self, lineno: int, byte_col: int) -> int:
        """Character offset into the text of an `ast` position."""
        return self.line_starts[lineno - 1] + self.char_col(lineno, byte_col)

    def node_span(self, node) -> tuple[int, int]:
        return (
            self.offset(node.lineno, node.col_offset),
            self.offset(node.end_lineno, node.end_col_offset),
        )

    def segment(self, node) -> str:
        start, end = self.node_span(node)
        return self.text[start:end]

    @property
    def indent_unit(self) -> str:
        """The indentation the file uses for one block level (4 spaces if it has none)."""
        for lineno in range(1, len(self.line_starts)):
            line = self.line_text(lineno)
            stripped = line.rstrip()
            if not stripped.endswith(":") or stripped.lstrip().startswith("#"):
                continue
            outer = line[: len(line) - len(line.lstrip())]
            for following in range(lineno + 1, len(self.line_starts) + 1):
                nxt = self.line_text(following)
                if not nxt.strip() or nxt.lstrip().startswith("#"):
                    continue
                inner = nxt[: len(nxt) - len(nxt.lstrip())]
                if inner.startswith(outer) and len(inner) > len(outer):
                    return inner[len(outer):]
                break
        return "    "
