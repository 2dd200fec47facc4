"""JSON from files we do not trust: bounded size, nesting depth and numbers, checked before parsing.

Python's json module recurses once per nesting level (a file 100,000 levels deep ends in
RecursionError) and accepts integers of thousands of digits and the constants Infinity and NaN.
This reader refuses all of those with a ValueError that says which limit was hit.
"""
import json

MAX_DEPTH = 64
MAX_INT_DIGITS = 18  # any size a model can have fits; a 5,000-digit integer does not


def _depth(text):
    """The deepest nesting of [ and { outside strings, scanned without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _integer(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _constant(name):
    raise ValueError(f"the non-standard constant {name}")


def loads(text, max_bytes=16 * 1024 * 1024, what="JSON", object_pairs_hook=None):
    """Parse ``text`` within the limits above, or raise ValueError naming ``what`` and the limit."""
    if len(text) > max_bytes:
        raise ValueError(f"{what} is {len(text):,} bytes (limit {max_bytes:,})")
    deepest = _depth(text)
    if deepest > MAX_DEPTH:
        raise ValueError(f"{what} is nested {deepest} levels deep (limit {MAX_DEPTH})")
    try:
        return json.loads(text, parse_int=_integer, parse_constant=_constant, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError:
        raise
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
