"""Generated hostile and unusual input, shared by the tests of this package."""

from __future__ import annotations

from hypothesis import strategies as st

from geo_sync.errors import InvalidInput
from geo_sync.paths import validate_relpath

#: Pieces a buggy CI system or an attacker puts into names: URL syntax, escapes,
#: control characters of every range, non-ASCII, and our own reserved spellings.
HOSTILE_PIECES = [
    "a", "Z", "0", "-", "_", "~", " ", "  ", "?", "#", "%", "%2f", "%2F", "%00", "%25", "&",
    "=", "+", ";", ":", "@", "!", "$", "'", '"', "(", "[", "]", "{", "*", ",", "<", ">",
    "|", "^", "`", "/", "//", ".", "..", "...", ".git", "x.git", ".geo-sync-tmp-",
    "\\", "\t", "\n", "\r", "\x01", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f",
    "\xa0", "é", "ß", "日本", "\u200b", "\u202e", "\ufeff", "\U0001f600", "\ud800",
]

hostile_text = st.lists(st.sampled_from(HOSTILE_PIECES), min_size=0, max_size=8).map("".join)


def _is_valid(path: str) -> bool:
    try:
        validate_relpath(path)
    except InvalidInput:
        return False
    return True


#: Characters a valid path may hold in a component, one of each kind.
_NAME_CHARS = st.sampled_from([
    "a", "b", "0", "-", "_", "~", ".", " ", "?", "#", "%", "%2f", "%25", "&", "=", "+",
    ";", ":", "@", "!", "$", "'", '"', "(", ")", "[", "]", "{", "}", "*", ",", "<", ">",
    "|", "^", "`", "\xa0", "é", "ß", "日本", "\u200b", "\u202e", "\ufeff", "\U0001f600",
])
_component = st.lists(_NAME_CHARS, min_size=1, max_size=6).map("".join).filter(
    lambda part: part not in (".", ".."))

#: Any path the rules allow (the rules themselves have the last word).
valid_paths = st.lists(_component, min_size=1, max_size=3).map("/".join).filter(_is_valid)
