"""SLUICE_DATABASE_URL: every way of writing a password is hidden by `config show`, and a
malformed DSN stops start-up with one line that quotes no part of it."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sluice.config import load_settings
from sluice.config_text import describe
from sluice.dsn import INVALID, check_dsn, mask_dsn
from sluice.errors import ConfigError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE = {"WORKER_ID": "w-test", "SLUICE_SINK": "postgres"}
REFUSED = f"SLUICE_DATABASE_URL=*** is invalid: {INVALID}"
BLANKS = " \t\n\v\f\r"

passwords = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=24,
)
# Characters a writer of a URL may leave unencoded; those libpq would misread are left out
# per position (user info ends at @ or /, a query value at & or =, % always starts an escape;
# libpq refuses a raw space in a URL).
userinfo_raw = st.sets(st.sampled_from(list("!$&'()*+,;=:?#[]~\"<>\\^`{|}")))
query_raw = st.sets(st.sampled_from(list("!$'()*+,;:?#[]~@/\"<>\\^`{|}")))


def leaks(secret: str, text: str) -> list[str]:
    """Every piece of three or more characters of ``secret`` that ``text`` contains."""
    return [
        secret[i:j]
        for i in range(len(secret))
        for j in range(i + 3, len(secret) + 1)
        if secret[i:j] in text
    ]


def escaped(secret: str, specials: str) -> str:
    return "".join("\\" + c if c in specials else c for c in secret)


def shown(dsn: str) -> str:
    """Everything `sluice config show` prints for these settings."""
    return repr(describe(load_settings(BASE | {"SLUICE_DATABASE_URL": dsn})))


Form = Callable[[str], str]


@st.composite
def written_forms(draw: st.DrawFn) -> tuple[str, Form]:
    """(libpq key the password lands in, how the DSN is written around a password)."""
    kind = draw(st.sampled_from(["userinfo", "query", "bare", "quoted"]))
    if kind == "userinfo":
        safe = "".join(sorted(draw(userinfo_raw)))
        return (
            "password",
            lambda p: f"postgresql://loader:{quote(p, safe=safe)}@db.internal:5432/warehouse",
        )
    if kind == "query":
        safe = "".join(sorted(draw(query_raw)))
        key = draw(st.sampled_from(["password", "pass%77ord", "%70assword", "sslpassword"]))
        return (
            key.replace("%77", "w").replace("%70", "p"),
            lambda p: (
                f"postgresql://db.internal:5432/warehouse?user=loader&{key}="
                f"{quote(p, safe=safe)}&sslmode=disable"
            ),
        )
    key = draw(st.sampled_from(["password", "sslpassword"]))
    equals = draw(st.sampled_from(["=", " = ", "=\t"]))
    if kind == "bare":
        value: Form = lambda p: escaped(p, BLANKS + "\\'")  # noqa: E731
    else:
        value = lambda p: "'" + escaped(p, "\\'") + "'"  # noqa: E731
    first = draw(st.booleans())
    return (
        key,
        lambda p: (
            f"{key}{equals}{value(p)} host=db.internal user=loader dbname=w"
            if first
            else f"host=db.internal user=loader {key}{equals}{value(p)} dbname=w"
        ),
    )


@SETTINGS
@given(written_forms(), passwords)
@example(("password", lambda p: f"host=db user=loader password={escaped(p, BLANKS)}"), "a b")
@example(("password", lambda p: f"postgresql://u:{p}@h/d"), "a?b#c")
def test_config_show_hides_every_written_form_of_a_password(
    form: tuple[str, Form], secret: str
) -> None:
    key, write = form
    assert check_dsn(write(secret))[key] == secret  # libpq reads the password we meant
    neutral = shown(write("x"))
    assume(not leaks(secret, neutral))
    text = shown(write(secret))
    assert not leaks(secret, text)
    assert text == neutral  # what is shown does not depend on the password at all


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, str]:
    """(secret, a DSN around it that libpq cannot read)."""
    word = st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters=BLANKS + "=\\'\x00"),
        min_size=1,
        max_size=12,
    )
    kind = draw(st.sampled_from(["unquoted space", "unterminated", "raw @", "bad escape", "=="]))
    if kind == "unquoted space":  # password=S3cret PW
        secret = f"{draw(word)} {draw(word)}"
        return secret, f"host=db.internal password={secret} dbname=w"
    secret = draw(passwords)
    if kind == "unterminated":
        return secret, f"host=db.internal password='{escaped(secret, chr(92) + chr(39))}"
    if kind == "raw @":  # the part after the first @ would become the host name
        head, tail = draw(passwords), draw(passwords)
        secret = f"{head}@{tail}"
        return secret, f"postgresql://loader:{quote(head)}@{quote(tail)}@db.internal/w"
    if kind == "bad escape":
        return secret, f"postgresql://loader:{quote(secret)}%zz@db.internal/w"
    return secret, f"postgresql://db.internal/w?password={quote(secret)}=x"


@SETTINGS
@given(malformed())
@example(("S3cret PW", "host=127.0.0.1 dbname=test password=S3cret PW"))
def test_a_malformed_dsn_is_refused_with_one_line_that_quotes_none_of_it(
    case: tuple[str, str],
) -> None:
    secret, dsn = case
    with pytest.raises(ConfigError) as info:
        load_settings(BASE | {"SLUICE_DATABASE_URL": dsn})
    message = str(info.value)
    assert message == REFUSED
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assume(not leaks(secret, REFUSED))
    assert not leaks(secret, message)


def test_a_nul_character_is_refused_rather_than_cut_off() -> None:
    with pytest.raises(ValueError, match="NUL"):
        check_dsn("host=db password=abc\x00def")


def test_a_value_that_cannot_be_shown_safely_is_hidden_whole() -> None:
    assert mask_dsn("not a dsn at all") == "***"
    assert mask_dsn("host=db password='unterminated") == "***"


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://db/x", "postgresql://db/x"),
        ("postgresql://u:@h/d", "postgresql://u:@h/d"),  # an empty password: nothing to hide
        ("host=h password=''", "host=h password=''"),
        ("postgresql://u:a?b#c@h:5432/d", "postgresql://u:***@h:5432/d"),
        ("host=h password=a\\ b user=u", "host=h password=*** user=u"),
        ("password = 'a\\' b' host=h", "password = *** host=h"),
        (
            "postgresql://h/d?pass%77ord=x&sslmode=disable",
            "postgresql://h/d?pass%77ord=***&sslmode=disable",
        ),
    ],
)
def test_the_mask_keeps_everything_but_the_secret(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked
