"""JSON from outside (request bodies, fetched client metadata documents), parsed with a nesting limit.

Python's JSON parser recurses once per level, so a body of 30,000 brackets, well under the body cap,
raises RecursionError rather than ValueError. Real client metadata is a few levels deep at most (the
document, a jwks object, its keys array, a key, the key's x5c array): anything deeper than
MAX_DEPTH is refused before the parser sees it.
"""

from __future__ import annotations

import json
import re

from flask import g, request

MAX_DEPTH = 32

# The only characters that open or close a level, start or end a string, or escape within one.
_STRUCTURE = re.compile(r'[\[\]{}"\\]')


class UntrustedJsonError(ValueError):
    """Not usable JSON; the message is safe to show to the sender."""


def nested_deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects in `text` nest deeper than `limit`, brackets in strings not counted.
    Stops at the first level too many, so an attack costs no more than `limit` steps; malformed
    text is left for the parser to refuse."""
    depth = 0
    in_string = False
    escaped_at = -1  # the position of the character a backslash escapes
    for match in _STRUCTURE.finditer(text):
        position, char = match.start(), match.group()
        if position == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def loads(data: bytes | str, *, what: str = "The body") -> object:
    """The parsed value; raises UntrustedJsonError naming `what` when it is not JSON or nests too deep."""
    try:
        # The encodings json.loads accepts for bytes (UTF-8, -16, -32), detected the same way.
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data))
    except UnicodeDecodeError as exc:
        raise UntrustedJsonError(f"{what} is not JSON") from exc
    if nested_deeper_than(text, MAX_DEPTH):
        raise UntrustedJsonError(f"{what} is JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UntrustedJsonError(f"{what} is not JSON") from exc


def request_object() -> dict:
    """The request's body as a JSON object, parsed once per request; raises UntrustedJsonError."""
    if "untrusted_json_object" not in g:
        value = loads(request.get_data(cache=True))
        if not isinstance(value, dict):
            raise UntrustedJsonError("The body must be a JSON object")
        g.untrusted_json_object = value
    return g.untrusted_json_object
