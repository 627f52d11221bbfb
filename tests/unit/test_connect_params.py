"""Property tests of the connect parameters: whatever a client puts in the connect URL (and
the ``Authorization`` header), :func:`presenced.server.auth_flow.connect_auth` gives a valid
``auth`` request, None (no credentials: wait for an ``auth`` message), or a non-fatal
``BAD_REQUEST`` that names the field; never another exception."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, quote

from hypothesis import given, settings
from hypothesis import strategies as st

from presenced.errors import ProtocolError
from presenced.protocol.codes import ErrorCode
from presenced.protocol.messages import Auth
from presenced.server.auth_flow import connect_auth

__all__: list[str] = []

KNOWN = ["token", "user", "device", "device_info", "resume", "protocol", "positions", "ref"]
# ... and what the parser must not be fooled by: another message's tag, a struct's internals.
HOSTILE_KEYS = ["type", "__class__", "rooms", "status", "session", "moderator", ""]

_json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


_values = st.one_of(
    st.text(max_size=40),  # any code point, lone surrogates included
    st.text(alphabet="abc-_.:0123456789 \t\n", max_size=300),  # Name-like, over 256 too
    st.integers().map(str),
    st.sampled_from(["", " ", "1", "0", "-1", "1e9", "NaN", "Infinity", "null", "true", "9" * 400]),
    _json.map(json.dumps),  # device_info / positions as JSON text, of any shape
    st.sampled_from([_deep(31), _deep(33), _deep(5000), "[" * 3000, '{"a":"\\ud800"}']),
)
_keys = st.sampled_from(KNOWN + HOSTILE_KEYS) | st.text(max_size=10)
_query = st.dictionaries(_keys, _values, max_size=7)
_headers = st.dictionaries(
    st.sampled_from(["authorization", "origin", "x-forwarded-for"]),
    st.one_of(_values, _values.map(lambda v: "Bearer " + v), _values.map(lambda v: "bEaReR  " + v)),
    max_size=2,
)


def check(query: dict[str, str], headers: dict[str, str]) -> Auth | None:
    """connect_auth's contract: a valid Auth, None, or a clear non-fatal error."""
    try:
        auth = connect_auth(query, headers)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.BAD_REQUEST, (exc.code, exc.message)
        assert not exc.fatal
        assert exc.field, f"the error names no field: {exc.message}"
        assert exc.message
        return None
    if auth is None:  # only without credentials
        header = headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
        assert not (query.get("token") or bearer)
        assert "user" not in query and "resume" not in query
        return None
    assert isinstance(auth, Auth)
    assert isinstance(auth.device, str) and auth.device
    assert isinstance(auth.protocol, int)
    assert auth.device_info is None or isinstance(auth.device_info, dict)
    assert auth.positions is None  # the URL cannot carry them (docs/protocol.md)
    return auth


@settings(max_examples=500, deadline=None)
@given(_query, _headers)
def test_any_connect_parameters_give_an_auth_none_or_a_clear_error(
    query: dict[str, str], headers: dict[str, str]
) -> None:
    check(query, headers)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_keys, _values), max_size=6), st.booleans())
def test_raw_query_strings_as_the_transport_parses_them(
    pairs: list[tuple[str, str]], with_user: bool
) -> None:
    """A query string percent-encoded (or not) by a client, parsed as ws_picows does (the path
    decoded as latin-1, then ``parse_qsl`` keeping blanks; a repeated key: the last wins)."""
    if with_user:
        pairs = [("user", "alice"), ("device", "d1"), *pairs]
    raw = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    raw = raw.encode("utf-8", "surrogatepass").decode("latin-1")
    query = dict(parse_qsl(raw, keep_blank_values=True))
    check(query, {})


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_unencoded_garbage_after_the_question_mark(raw: str) -> None:
    query = dict(parse_qsl("user=u&device=d&" + raw, keep_blank_values=True))
    check(query, {})


def test_a_valid_url_gives_its_auth() -> None:
    info = json.dumps({"app": "ios", "v": [1, 2]})
    auth = check({"user": "alice", "device": "d1", "device_info": info, "protocol": "1"}, {})
    assert auth is not None
    assert (auth.user, auth.device, auth.device_info) == (
        "alice",
        "d1",
        {"app": "ios", "v": [1, 2]},
    )
    auth = check({"device": "d"}, {"authorization": "Bearer abc.def.ghi"})
    assert auth is not None and auth.token == "abc.def.ghi"
    assert check({"device": "d"}, {}) is None  # no credentials: an auth message will come


def test_a_query_cannot_turn_auth_into_another_message() -> None:
    """The URL always means auth: ``type`` is ignored, like any parameter it does not know."""
    for value in ("logout", "room.join", "", "auth"):
        auth = connect_auth({"user": "u", "device": "d", "type": value}, {})
        assert isinstance(auth, Auth) and auth.user == "u"
