"""Small libcst node edits shared by fixes: set, add or drop a call argument or dict entry.

Each keeps the formatting around it: an argument added to a call whose arguments end
with a trailing comma gets its own line, like its neighbours.
"""

from __future__ import annotations

from typing import Optional

from zklint.lazy_import import libcst as cst  # imported on first use: fixes only


def _append(elements: list, new, opening_whitespace) -> list:
    if not elements:
        return [new]
    last = elements[-1]
    if isinstance(last.comma, cst.Comma) and _is_multiline(last.comma.whitespace_after):
        # Trailing comma before a newline: the new element takes over the trailing comma.
        separator = cst.Comma(whitespace_after=opening_whitespace) if len(elements) < 2 else elements[-2].comma
        return elements[:-1] + [last.with_changes(comma=separator), new.with_changes(comma=last.comma)]
    if isinstance(last.comma, cst.Comma):
        return elements + [new]
    return elements[:-1] + [last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))), new]


def _is_multiline(whitespace) -> bool:
    return isinstance(whitespace, cst.ParenthesizedWhitespace)


def _remove(elements: list, index: int) -> list:
    removed = elements[index]
    rest = elements[:index] + elements[index + 1:]
    if index == len(elements) - 1 and rest:
        # The removed element was last: its comma (or its absence) ends the list now,
        # but a comment on the removed line goes with it, not onto the line before.
        previous, comma = rest[-1], removed.comma
        if (
            isinstance(comma, cst.Comma) and isinstance(previous.comma, cst.Comma)
            and _is_multiline(comma.whitespace_after) and _is_multiline(previous.comma.whitespace_after)
        ):
            kept_line = previous.comma.whitespace_after.first_line
            comma = comma.with_changes(whitespace_after=comma.whitespace_after.with_changes(first_line=kept_line))
        rest[-1] = previous.with_changes(comma=comma)
    return rest


def keyword_index(call: cst.Call, name: str) -> Optional[int]:
    for index, arg in enumerate(call.args):
        if arg.keyword is not None and arg.keyword.value == name:
            return index
    return None


def set_keyword(call: cst.Call, name: str, value: cst.BaseExpression) -> cst.Call:
    """``f(..., name=value)``: replace the value when present, else add the argument."""
    index = keyword_index(call, name)
    args = list(call.args)
    if index is not None:
        args[index] = args[index].with_changes(value=value)
        return call.with_changes(args=args)
    equal = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))
    new = cst.Arg(keyword=cst.Name(name), value=value, equal=equal)
    return call.with_changes(args=_append(args, new, call.whitespace_before_args))


def set_positional(call: cst.Call, index: int, value: cst.BaseExpression) -> cst.Call:
    args = list(call.args)
    args[index] = args[index].with_changes(value=value)
    return call.with_changes(args=args)


def remove_keyword(call: cst.Call, name: str) -> cst.Call:
    index = keyword_index(call, name)
    if index is None:
        return call
    return call.with_changes(args=_remove(list(call.args), index))


def dict_key_index(node: cst.Dict, key: str) -> Optional[int]:
    for index, element in enumerate(node.elements):
        if isinstance(element, cst.DictElement) and isinstance(element.key, cst.SimpleString):
            if element.key.evaluated_value == key:
                return index
    return None


def set_dict_entry(node: cst.Dict, key: str, value: cst.BaseExpression) -> cst.Dict:
    """``{..., "key": value}``, with the quotes the dict already uses."""
    index = dict_key_index(node, key)
    elements = list(node.elements)
    if index is not None:
        elements[index] = elements[index].with_changes(value=value)
        return node.with_changes(elements=elements)
    quote = '"'
    for element in elements:
        if isinstance(element, cst.DictElement) and isinstance(element.key, cst.SimpleString):
            quote = element.key.quote
            break
    new = cst.DictElement(key=cst.SimpleString(f"{quote}{key}{quote}"), value=value)
    return node.with_changes(elements=_append(elements, new, node.lbrace.whitespace_after))


def remove_dict_entry(node: cst.Dict, key: str) -> cst.Dict:
    index = dict_key_index(node, key)
    if index is None:
        return node
    return node.with_changes(elements=_remove(list(node.elements), index))
