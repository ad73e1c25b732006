"""Parsers for setting values: each turns raw text into a value or raises ValueError with
what is allowed, which ``load_settings`` prefixes with the setting's name."""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import tomllib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sluice.dsn import check_dsn
from sluice.errors import ConfigError


@dataclass(frozen=True)
class Spec:
    """One setting: its name (TOML key, flag), its environment variable, its parser and its
    help; ``field`` is where it lives in ``Settings`` when nested (``redshift.database``)."""

    name: str
    env: str
    parse: Callable[[str], object]
    help: str
    secret: bool = False
    field: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def attribute(self) -> str:
        """The dotted path of the value in ``Settings``: its ``field``, else its name."""
        return self.field or self.name

    def value_of(self, settings: object) -> object:
        """This setting's value in ``settings``, however deep it is nested."""
        return functools.reduce(getattr, self.attribute.split("."), settings)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_identifier(value: str, *, qualified: bool = False) -> str:
    """Accept ``name`` (or ``schema.name`` when qualified) made of safe identifier parts."""
    parts = value.split(".") if qualified else [value]
    if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
        shape = "[schema.]name" if qualified else "name"
        raise ValueError(
            f"must be an identifier {shape} of letters, digits and underscores "
            "(starting with a letter or underscore, at most 63 characters each)"
        )
    return value


def int_range(lo: int, hi: int) -> Callable[[str], object]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be an integer from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be an integer from {lo} to {hi}")
        return value

    return parse


def float_range(lo: float, hi: float) -> Callable[[str], object]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be a number from {lo:g} to {hi:g}")
        return value

    return parse


_SIZE = re.compile(r"\s*([0-9]+)\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def byte_size(lo: int, hi: int) -> Callable[[str], object]:
    """Bytes, written plainly or with a binary unit: 268435456, 256MiB, 256M (all 2**28)."""

    def parse(raw: str) -> int:
        match = _SIZE.fullmatch(raw)
        if match is None:
            raise ValueError(f"must be a size in bytes from {lo} to {hi} (or like 256MiB)")
        value = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "")[:1].lower()]
        if not lo <= value <= hi:
            raise ValueError(f"must be a size in bytes from {lo} to {hi} (or like 256MiB)")
        return value

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false (also 1/0, yes/no, on/off)")


def enum_of(kind: type[enum.Enum]) -> Callable[[str], object]:
    allowed = ", ".join(str(m.value) for m in kind)

    def parse(raw: str) -> enum.Enum:
        try:
            return kind(raw.strip().lower())
        except ValueError:
            raise ValueError(f"must be one of: {allowed}") from None

    return parse


def choice_of(*allowed: str) -> Callable[[str], object]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of: {', '.join(allowed)}")
        return value

    return parse


def http_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return raw.strip()


def pg_url(raw: str) -> str:
    """A DSN libpq can read, checked now so a malformed one never reaches the driver, whose
    error would quote it, password and all."""
    value = raw.strip()
    check_dsn(value)
    return value


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")  # _: Docker service names


def listen_host(raw: str) -> str:
    """An address to listen on: an IP address (v4 or v6, brackets optional) or a host name.

    A value that is neither would only fail when the socket is bound, where it used to turn
    the HTTP endpoints off with a warning instead of stopping start-up.
    """
    value = raw.strip()
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        return bare
    labels = value.removesuffix(".").split(".")
    # A last label of digits makes it an IPv4 address that failed to parse (999.1.1.1),
    # not a name: no top-level domain is numeric.
    if (
        len(value) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return value
    raise ValueError("must be an IP address (v4 or v6) or a host name, e.g. 0.0.0.0 or localhost")


def nonempty_text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def table_identifier(raw: str) -> str:
    return validate_identifier(raw.strip(), qualified=True)


def column_identifier(raw: str) -> str:
    return validate_identifier(raw.strip())


def s3_uri(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("must be an s3://bucket/prefix URI")
    return raw.strip().rstrip("/")


_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:[A-Za-z0-9_+=,.@:/-]+")


def aws_arn(raw: str) -> str:
    value = raw.strip()
    if not _ARN.fullmatch(value):
        raise ValueError("must be an ARN (arn:aws:service:region:account:resource)")
    return value


def read_toml(path: str, known: Collection[str]) -> dict[str, object]:
    """The settings of a TOML file (top level or ``[sluice]``); unknown names are refused."""
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    table = data.get("sluice", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [sluice] must be a table")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return dict(table)


def setting_text(value: object) -> str:
    """A setting's value as its environment variable would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)
