"""SLUICE_DATABASE_URL: checked with the settings, and shown with every secret hidden.

libpq accepts two forms, a ``postgresql://`` URI and a ``key=value`` string, with quoting,
backslash escapes and percent-encoding that a regular expression gets wrong (a password
with a space, an escaped quote or an encoded keyword). So the check is libpq's own parser
(through psycopg), and the mask walks the text with libpq's rules, then proves itself by
parsing the result again: if anything but the secret changed, the whole value is hidden.
Neither ever repeats any part of the value in an error, because libpq's messages quote it.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote

SECRET_KEYS = frozenset({"password", "sslpassword"})
MASK = "***"
URI_PREFIXES = ("postgresql://", "postgres://")  # libpq compares these case-sensitively
_BLANKS = " \t\n\v\f\r"  # isspace() in the C locale, which libpq uses

INVALID = (
    "cannot be parsed as a postgresql:// URL or a libpq key=value string "
    "(quote a value with spaces as key='two words'; percent-encode @ / % & = in a URL)"
)


def check_dsn(value: str) -> dict[str, str]:
    """libpq's reading of ``value``; ValueError (quoting nothing of it) if it has none."""
    if not (value.startswith(URI_PREFIXES) or "=" in value):
        raise ValueError("must be a postgresql:// URL or a libpq key=value string")
    if "\x00" in value:  # libpq would silently read only up to it
        raise ValueError("must not contain a NUL character")
    params = _parse(value)
    if params is None:
        raise ValueError(INVALID)
    if value.startswith(URI_PREFIXES) and "@" in _after_userinfo(value):
        # libpq splits user info at the first @, so a raw @ in a password turns the rest of
        # it into the host or database name, which connection errors and logs then show.
        raise ValueError(INVALID)
    return params


def mask_dsn(value: str) -> str:
    """``value`` with every password replaced by ***; just *** if that cannot be proven."""
    original = _parse(value)
    if original is None:
        return MASK
    try:
        spans = list(_secret_spans(value))
    except ValueError:
        return MASK
    masked = value
    for start, end in sorted(spans, reverse=True):
        masked = masked[:start] + MASK + masked[end:]
    expected = {k: MASK if k in SECRET_KEYS and v else v for k, v in original.items()}
    return masked if _parse(masked) == expected else MASK


def _parse(value: str) -> dict[str, str] | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(value)
    except Exception:  # ProgrammingError, or an encoding error on a lone surrogate
        return None
    return {str(k): str(v) for k, v in params.items()}


def _secret_spans(value: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each non-empty secret value as written, following libpq's parser."""
    if value.startswith(URI_PREFIXES):
        yield from _uri_secret_spans(value)
    else:
        for key, start, end, text in _keyword_values(value):
            if key in SECRET_KEYS and text:
                yield start, end


def _keyword_values(value: str) -> Iterator[tuple[str, int, int, str]]:
    """(key, start, end, decoded value) for each ``key = value`` (libpq's conninfo_parse)."""
    i, n = 0, len(value)
    while i < n:
        if value[i] in _BLANKS:
            i += 1
            continue
        key_start = i
        while i < n and value[i] != "=" and value[i] not in _BLANKS:
            i += 1
        key = value[key_start:i]
        while i < n and value[i] in _BLANKS:
            i += 1
        if i >= n or value[i] != "=":
            raise ValueError("missing =")
        i += 1
        while i < n and value[i] in _BLANKS:
            i += 1
        start = i
        i, text = _quoted_value(value, i) if i < n and value[i] == "'" else _bare_value(value, i)
        yield key, start, i, text


def _quoted_value(value: str, i: int) -> tuple[int, str]:
    chars = []
    i += 1
    while True:
        if i >= len(value):
            raise ValueError("unterminated quote")
        if value[i] == "\\":
            if i + 1 < len(value):
                chars.append(value[i + 1])
            i += 2
            continue
        if value[i] == "'":
            return i + 1, "".join(chars)
        chars.append(value[i])
        i += 1


def _bare_value(value: str, i: int) -> tuple[int, str]:
    chars = []
    while i < len(value) and value[i] not in _BLANKS:
        if value[i] == "\\":
            if i + 1 < len(value):
                chars.append(value[i + 1])
            i += 2
            continue
        chars.append(value[i])
        i += 1
    return min(i, len(value)), "".join(chars)


def _uri_secret_spans(value: str) -> Iterator[tuple[int, int]]:
    """The password of the user info and every secret query parameter (libpq's URI rules:
    user info ends at the first @ met before any /, the query at the first ?)."""
    base = len(next(p for p in URI_PREFIXES if value.startswith(p)))
    rest = value[base:]
    at = _first_of(rest, "@/")
    if at < len(rest) and rest[at] == "@":
        colon = rest.find(":", 0, at)
        if colon >= 0 and colon + 1 < at:
            yield base + colon + 1, base + at
    query = value.find("?", base + at + 1 if at < len(rest) and rest[at] == "@" else base)
    if query < 0:
        return
    position = query + 1
    for part in value[query + 1 :].split("&"):
        key, sep, secret = part.partition("=")
        if sep and secret and unquote(key) in SECRET_KEYS:
            start = position + len(key) + 1
            yield start, start + len(secret)
        position += len(part) + 1


def _after_userinfo(value: str) -> str:
    """Host, port and database of a URI as libpq reads them: after any user info, up to ?."""
    rest = value[len(next(p for p in URI_PREFIXES if value.startswith(p))) :]
    at = _first_of(rest, "@/")
    if at < len(rest) and rest[at] == "@":
        rest = rest[at + 1 :]
    return rest[: _first_of(rest, "?")]


def _first_of(text: str, stops: str) -> int:
    return next((i for i, c in enumerate(text) if c in stops), len(text))
