"""The wire codec: round trips, and every class of malformed client input.

Every client and server message type must survive encode -> decode unchanged, with every
optional field set and with none. Every bad frame must become a :class:`ProtocolError` with
the documented code, the offending ``field`` and the request's ``ref`` when it can be read;
never another exception, which would reach the connection as an internal error. The
property tests feed arbitrary bytes, and JSON frames damaged at random, to ``decode_client``.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presenced.errors import ProtocolError
from presenced.protocol.chat import (
    MessageAck,
    MessageDelete,
    MessageDeleted,
    MessageEdit,
    MessageEdited,
    MessageEvent,
    MessageSend,
    Position,
    Receipt,
    ReceiptDelivered,
    ReceiptSeen,
    RoomHistory,
    RoomHistoryReply,
    RoomRead,
    RoomReadReply,
    RoomRecovered,
    TypingEvent,
    TypingStart,
    TypingStop,
)
from presenced.protocol.codec import (
    MAX_NESTING,
    check_free_form,
    convert_auth,
    decode_client,
    decode_server,
    encode,
)
from presenced.protocol.codes import ErrorCode
from presenced.protocol.messages import (
    Activity,
    Auth,
    ClientMessage,
    DeviceBack,
    DeviceDropped,
    DeviceGone,
    Error,
    ForceLeave,
    Heartbeat,
    HeartbeatAck,
    Logout,
    Member,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
    PresenceSubscribe,
    PresenceSubscribed,
    PresenceUnsubscribe,
    PresenceUnsubscribed,
    Refresh,
    Refreshed,
    RoomBatch,
    RoomCount,
    RoomCountReply,
    RoomDeleted,
    RoomJoin,
    RoomJoined,
    RoomLeave,
    RoomLeft,
    RoomMembers,
    RoomMembersReply,
    RoomMeta,
    RoomMetaUpdated,
    RoomRemoved,
    RoomSummary,
    ServerMessage,
    StatusSet,
    StatusUpdated,
    Welcome,
)

__all__: list[str] = []

CLIENT_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(ClientMessage)
SERVER_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(ServerMessage)
DECODE_CODES = {ErrorCode.BAD_JSON, ErrorCode.UNKNOWN_TYPE, ErrorCode.BAD_REQUEST}


def _tag(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


CLIENT_BY_TAG = {_tag(cls): cls for cls in CLIENT_TYPES}

# --- samples -------------------------------------------------------------------------------

# Every field set to something other than its default, so a round trip exercises all of them.
CLIENT_FULL: list[Any] = [
    Auth(
        device="phone-7f3a",
        token="eyJhbGciOiJIUzI1NiJ9.e30.sig",
        user="alice",
        device_info={"app": "ios", "version": [3, 2], "beta": True, "note": None},
        resume="rt_Kp0c",
        protocol=2,
        positions={
            "lobby": Position(epoch="9c1e", offset=41),
            "table-9": Position(epoch="x", offset=0),
        },
        ref="a1",
    ),
    Heartbeat(ref=17),
    Activity(ref="act"),
    RoomJoin(
        room="lobby",
        meta={"seat": 4, "nick": "Ali"},
        device_events=True,
        since=Position(epoch="9c1e", offset=41),
        ref=1,
    ),
    RoomLeave(room="lobby", ref="l1"),
    RoomMembers(room="lobby", ref=0),
    RoomCount(room="lobby", ref=-3),
    RoomMeta(room="lobby", meta={"seat": 5, "hand": True}, ref="m1"),
    StatusSet(status="dnd", text="in a meeting", ref=3),
    PresenceSubscribe(users=["bob", "carol"], ref="s1"),
    PresenceUnsubscribe(users=["carol"], ref="s2"),
    Logout(ref="bye"),
    Refresh(token="eyJhbGciOiJIUzI1NiJ9.e30.sig", ref=9),
    MessageSend(
        room="lobby", body={"text": "hi @bob", "mentions": ["bob"]}, temp_id="tmp-1", ref="ms1"
    ),
    MessageEdit(room="lobby", id="m_Zx81", body="hello (edited)", ref=6),
    MessageDelete(room="lobby", id="m_Zx81", ref="del"),
    ReceiptDelivered(room="lobby", offset=44, ref="rd"),
    ReceiptSeen(room="lobby", offset=43, ref=7),
    RoomRead(room="lobby", ref="rr"),
    RoomHistory(room="lobby", limit=1000, before=40, ref="h1"),
    TypingStart(room="lobby", ref="ts"),
    TypingStop(room="lobby", ref="tp"),
]

CLIENT_MINIMAL: list[Any] = [
    Auth(device="d"),
    Heartbeat(),
    Activity(),
    RoomJoin(room="r"),
    RoomLeave(room="r"),
    RoomMembers(room="r"),
    RoomCount(room="r"),
    RoomMeta(room="r", meta={}),
    StatusSet(status="online"),
    PresenceSubscribe(users=["u"]),
    PresenceUnsubscribe(users=["u"]),
    Logout(),
    Refresh(token="t"),
    MessageSend(room="r", body=""),
    MessageEdit(room="r", id="m", body={}),
    MessageDelete(room="r", id="m"),
    ReceiptDelivered(room="r", offset=0),
    ReceiptSeen(room="r", offset=0),
    RoomRead(room="r"),
    RoomHistory(room="r"),
    TypingStart(room="r"),
    TypingStop(room="r"),
]

_MEMBERS = [
    Member(
        user="alice",
        status="online",
        devices=1,
        text="hi",
        meta={"seat": 4},
        joined_at=1_700_000_000.25,
    ),
    Member(user="bob", status="busy", devices=2),
]
_PRESENCE_FULL = Presence(
    user="carol",
    online=False,
    status="offline",
    devices=0,
    text="gone",
    last_seen=1795431600.5,
    seq=1795431600500,
)
_MESSAGE_FULL = MessageEvent(
    room="lobby",
    epoch="9c1e",
    offset=42,
    id="m_Zx81",
    user="alice",
    device="phone",
    body={"text": "hi", "attachments": [{"url": "https://x.example/a.png", "w": 64}]},
    time=1795435200.25,
    temp_id="tmp-1",
)
_MESSAGE_MINIMAL = MessageEvent(
    room="r", epoch="e", offset=1, id="m", user="u", device="d", body="", time=0.0
)
# As room events (in room.recovered) they carry no ref; the requester's own copy does.
_EDITED_EVENT = MessageEdited(
    room="lobby",
    epoch="9c1e",
    offset=43,
    id="m_Zx81",
    user="mod-1",
    body="hello (edited)",
    time=1795435201.5,
)
_DELETED_EVENT = MessageDeleted(
    room="lobby", epoch="9c1e", offset=44, id="m_Zx81", user="alice", time=1795435202.0
)
_EDITED_FULL = msgspec.structs.replace(_EDITED_EVENT, ref=6)
_DELETED_FULL = msgspec.structs.replace(_DELETED_EVENT, ref="del")

SERVER_FULL: list[Any] = [
    Welcome(
        session="s_1",
        resume_token="rt_2",
        user="alice",
        device="phone",
        protocol=1,
        heartbeat_interval=20.0,
        heartbeat_timeout=10.0,
        grace=30.0,
        resumed=True,
        status="busy",
        inactivity_timeout=3600.0,
        rooms=["lobby", "table-9"],
        subscriptions=["bob"],
        text="lunch",
        resume_error="grace expired",
        node="gw-1",
        expires_at=1795438800.0,
        ref="a1",
    ),
    HeartbeatAck(time=1795435200.125, ref=17),
    Refreshed(expires_at=1795438800.0, ref=9),
    RoomJoined(room="lobby", version=42, members=_MEMBERS, ref="j1"),
    RoomLeft(room="lobby", ref="l1"),
    RoomMembersReply(room="lobby", version=43, members=_MEMBERS, ref=8),
    RoomCountReply(room="lobby", version=43, count=2, ref=9),
    RoomMetaUpdated(room="lobby", version=44, meta={"seat": 5}, ref="m1"),
    StatusUpdated(status="dnd", aggregate="invisible", text="meeting", ref=3),
    _PRESENCE_FULL,
    PresenceSubscribed(
        users=[_PRESENCE_FULL, Presence(user="bob", online=True, status="busy", devices=2)],
        ref="s1",
    ),
    PresenceUnsubscribed(users=["carol"], ref="s2"),
    MemberJoined(
        room="lobby",
        version=45,
        user="dave",
        status="online",
        devices=1,
        text="t",
        meta={"a": 1},
        joined_at=1_700_000_000.25,
    ),
    MemberLeft(room="lobby", version=46, user="dave", reason="grace_expired"),
    MemberUpdated(
        room="lobby", version=47, user="bob", status="away", devices=3, text="t", meta={"b": 2}
    ),
    RoomBatch(
        room="lobby",
        events=[
            MemberJoined(room="lobby", version=48, user="erin", status="online", devices=1),
            MemberLeft(room="lobby", version=49, user="dave", reason="left"),
        ],
    ),
    RoomSummary(room="stadium", count=18250, version=40211),
    RoomDeleted(room="lobby", version=57, reason="closed by the host"),
    RoomRemoved(room="lobby", reason="kicked", message="spamming"),
    DeviceDropped(room="lobby", user="bob", device="phone-2", grace=30.0),
    DeviceBack(room="lobby", user="bob", device="phone-2"),
    DeviceGone(room="lobby", user="bob", device="phone-2", reason="grace_expired"),
    ForceLeave(reason="inactivity_timeout", message="idle for 3600 s"),
    Error(code="BAD_REQUEST", message="field `room`: too long", field="room", ref="j1"),
    MessageAck(
        room="lobby",
        epoch="9c1e",
        offset=42,
        id="m_Zx81",
        duplicate=True,
        temp_id="tmp-1",
        ref="ms1",
    ),
    _MESSAGE_FULL,
    _EDITED_FULL,
    _DELETED_FULL,
    Receipt(room="lobby", kind="seen", user="bob", offset=42),
    RoomReadReply(room="lobby", epoch="9c1e", offset=44, last_read=40, unread=3, ref="rr"),
    RoomHistoryReply(
        room="lobby", epoch="9c1e", offset=44, messages=[_MESSAGE_FULL, _MESSAGE_MINIMAL], ref="h1"
    ),
    RoomRecovered(
        room="lobby",
        epoch="9c1e",
        offset=44,
        recovered=True,
        events=[_MESSAGE_FULL, _EDITED_EVENT, _DELETED_EVENT],
    ),
    TypingEvent(room="lobby", users=["bob", "carol"], seq=7),
]

SERVER_MINIMAL: list[Any] = [
    Welcome(
        session="s",
        resume_token="t",
        user="u",
        device="d",
        protocol=1,
        heartbeat_interval=20.0,
        heartbeat_timeout=10.0,
        grace=30.0,
        resumed=False,
        status="online",
    ),
    HeartbeatAck(time=0.0),
    Refreshed(),
    RoomJoined(room="r", version=0, members=[]),
    RoomLeft(room="r"),
    RoomMembersReply(room="r", version=0, members=[]),
    RoomCountReply(room="r", version=0, count=0),
    RoomMetaUpdated(room="r", version=1, meta={}),
    StatusUpdated(status="online", aggregate="online"),
    Presence(user="u", online=True, status="online", devices=1),
    PresenceSubscribed(users=[]),
    PresenceUnsubscribed(users=[]),
    MemberJoined(room="r", version=1, user="u", status="online", devices=1),
    MemberLeft(room="r", version=2, user="u", reason="left"),
    MemberUpdated(room="r", version=3, user="u", status="online", devices=2),
    RoomBatch(room="r", events=[]),
    RoomSummary(room="r", count=0, version=0),
    RoomDeleted(room="r", version=1),
    RoomRemoved(room="r", reason="kicked"),
    DeviceDropped(room="r", user="u", device="d", grace=1.5),
    DeviceBack(room="r", user="u", device="d"),
    DeviceGone(room="r", user="u", device="d", reason="node_lost"),
    ForceLeave(reason="kicked", message="bye"),
    Error(code="INTERNAL", message="oops"),
    MessageAck(room="r", epoch="e", offset=1, id="m", duplicate=False),
    _MESSAGE_MINIMAL,
    MessageEdited(room="r", epoch="e", offset=2, id="m", user="u", body={}, time=0.0),
    MessageDeleted(room="r", epoch="e", offset=3, id="m", user="u", time=0.0),
    Receipt(room="r", kind="delivered", user="u", offset=0),
    RoomReadReply(room="r", epoch="e", offset=0, last_read=0, unread=0),
    RoomHistoryReply(room="r", epoch="e", offset=0, messages=[]),
    RoomRecovered(room="r", epoch="e", offset=0, recovered=False),
    TypingEvent(room="r", users=[], seq=1),
]


def _ids(messages: list[Any]) -> list[str]:
    return [_tag(type(m)) for m in messages]


def _required(cls: type[msgspec.Struct]) -> list[str]:
    return [f.name for f in msgspec.structs.fields(cls) if f.required]


def _minimal_frame(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """A valid frame of ``cls`` as a dict: its tag and only the required fields."""
    sample = next(m for m in CLIENT_MINIMAL if type(m) is cls)
    frame: dict[str, Any] = {"type": _tag(cls)}
    for name in _required(cls):
        frame[name] = getattr(sample, name)
    return frame


def _reject(data: bytes | str, **kwargs: Any) -> ProtocolError:
    """Decode ``data``, which must fail with a ProtocolError (and nothing else)."""
    with pytest.raises(ProtocolError) as info:
        decode_client(data, **kwargs)
    assert info.value.fatal is False  # the codec never closes a connection
    return info.value


def _frame(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj)


# --- the samples cover everything ----------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "types"),
    [
        (CLIENT_FULL, CLIENT_TYPES),
        (CLIENT_MINIMAL, CLIENT_TYPES),
        (SERVER_FULL, SERVER_TYPES),
        (SERVER_MINIMAL, SERVER_TYPES),
    ],
    ids=["client-full", "client-minimal", "server-full", "server-minimal"],
)
def test_samples_cover_every_message_type(samples: list[Any], types: tuple[type, ...]) -> None:
    assert sorted(_ids(samples)) == sorted(_tag(cls) for cls in types)
    assert len({type(m) for m in samples}) == len(samples)


@pytest.mark.parametrize("message", CLIENT_FULL + SERVER_FULL, ids=_ids(CLIENT_FULL + SERVER_FULL))
def test_full_samples_set_every_optional_field(message: Any) -> None:
    for f in msgspec.structs.fields(type(message)):
        value = getattr(message, f.name)
        if f.default is not msgspec.NODEFAULT:
            assert value != f.default, f"{f.name} left at its default"
        if f.default_factory is not msgspec.NODEFAULT:
            assert value != f.default_factory(), f"{f.name} left at its default"


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message", CLIENT_FULL + CLIENT_MINIMAL, ids=_ids(CLIENT_FULL) + _ids(CLIENT_MINIMAL)
)
def test_client_message_round_trip(message: Any) -> None:
    data = encode(message)
    assert isinstance(data, bytes)
    assert msgspec.json.decode(data)["type"] == _tag(type(message))
    decoded = decode_client(data)
    assert type(decoded) is type(message)
    assert decoded == message
    assert decode_client(data.decode()) == message  # text input too


@pytest.mark.parametrize(
    "message", SERVER_FULL + SERVER_MINIMAL, ids=_ids(SERVER_FULL) + _ids(SERVER_MINIMAL)
)
def test_server_message_round_trip(message: Any) -> None:
    data = encode(message)
    assert msgspec.json.decode(data)["type"] == _tag(type(message))
    decoded = decode_server(data)
    assert type(decoded) is type(message)
    assert decoded == message


@pytest.mark.parametrize("message", SERVER_MINIMAL, ids=_ids(SERVER_MINIMAL))
def test_server_omits_fields_at_their_default(message: Any) -> None:
    """docs/protocol.md: "absent means default"; only required fields go on the wire."""
    sent = msgspec.json.decode(encode(message))
    assert set(sent) == {"type", *_required(type(message))}


def test_nested_presence_carries_its_type_and_member_does_not() -> None:
    subscribed = msgspec.json.decode(
        encode(SERVER_FULL[_ids(SERVER_FULL).index("presence.subscribed")])
    )
    assert [u["type"] for u in subscribed["users"]] == ["presence", "presence"]
    joined = msgspec.json.decode(encode(RoomJoined(room="r", version=1, members=_MEMBERS)))
    assert all("type" not in m for m in joined["members"])
    assert "text" not in joined["members"][1]


def test_nested_room_events_carry_their_type_and_position_does_not() -> None:
    """room.history and room.recovered hold whole events; a Position is a bare object."""
    recovered = msgspec.json.decode(encode(SERVER_FULL[_ids(SERVER_FULL).index("room.recovered")]))
    assert [e["type"] for e in recovered["events"]] == [
        "message",
        "message.edited",
        "message.deleted",
    ]
    assert [e["offset"] for e in recovered["events"]] == [42, 43, 44]
    assert all("ref" not in e for e in recovered["events"])  # a ref is for the requester only
    history = msgspec.json.decode(encode(SERVER_FULL[_ids(SERVER_FULL).index("room.history")]))
    assert [m["type"] for m in history["messages"]] == ["message", "message"]
    assert "temp_id" not in history["messages"][1]
    join = msgspec.json.decode(encode(CLIENT_FULL[_ids(CLIENT_FULL).index("room.join")]))
    assert join["since"] == {"epoch": "9c1e", "offset": 41}
    auth = msgspec.json.decode(encode(CLIENT_FULL[_ids(CLIENT_FULL).index("auth")]))
    assert auth["positions"]["table-9"] == {"epoch": "x", "offset": 0}


def test_recovered_false_leaves_out_the_empty_event_list() -> None:
    sent = msgspec.json.decode(
        encode(RoomRecovered(room="r", epoch="e", offset=9, recovered=False))
    )
    assert sent == {
        "type": "room.recovered",
        "room": "r",
        "epoch": "e",
        "offset": 9,
        "recovered": False,
    }
    assert decode_server(encode(RoomRecovered(room="r", epoch="e", offset=9, recovered=False))) == (
        RoomRecovered(room="r", epoch="e", offset=9, recovered=False, events=[])
    )


@pytest.mark.parametrize(
    "body",
    [
        "",
        "plain text",
        'ünïcødé ✓ \U0001f600 \u0000 \n\t "quoted"',
        {},
        {"text": "hi", "n": -1.5, "ok": True, "none": None, "list": [1, "two", {"three": [3]}]},
        {"": {"": ""}},
    ],
    ids=["empty", "text", "unicode", "empty-object", "nested-object", "empty-keys"],
)
def test_message_bodies_are_carried_unchanged(body: Any) -> None:
    send = decode_client(_frame({"type": "message.send", "room": "lobby", "body": body}))
    assert isinstance(send, MessageSend)
    assert send.body == body
    event = MessageEvent(
        room="lobby", epoch="e", offset=1, id="m", user="u", device="d", body=body, time=1.0
    )
    decoded = decode_server(encode(event))
    assert isinstance(decoded, MessageEvent)
    assert decoded.body == body
    assert type(decoded.body) is type(body)


def test_room_history_limit_defaults_to_50() -> None:
    history = decode_client(b'{"type": "room.history", "room": "lobby"}')
    assert history == RoomHistory(room="lobby", limit=50, before=None)


def test_unknown_fields_are_ignored() -> None:
    message = decode_client(b'{"type":"room.join","room":"lobby","future_field":[1,2],"ref":5}')
    assert message == RoomJoin(room="lobby", ref=5)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "room.join", "room": "x" * 256}, RoomJoin(room="x" * 256)),
        ({"type": "room.join", "room": "é" * 256}, RoomJoin(room="é" * 256)),  # characters
        ({"type": "room.join", "room": "a:b/c#d"}, RoomJoin(room="a:b/c#d")),
        ({"type": "auth", "device": "d" * 256}, Auth(device="d" * 256)),
        (
            {"type": "status.set", "status": "away", "text": "t" * 256},
            StatusSet(status="away", text="t" * 256),
        ),
        (
            {"type": "status.set", "status": "online", "text": ""},
            StatusSet(status="online", text=""),
        ),
        (
            {"type": "presence.subscribe", "users": [f"u{i}" for i in range(1000)]},
            PresenceSubscribe(users=[f"u{i}" for i in range(1000)]),
        ),
        ({"type": "heartbeat", "ref": None}, Heartbeat()),
        ({"type": "heartbeat", "ref": ""}, Heartbeat(ref="")),
        ({"type": "heartbeat", "ref": 2**53}, Heartbeat(ref=2**53)),
        ({"type": "room.history", "room": "r", "limit": 1}, RoomHistory(room="r", limit=1)),
        ({"type": "room.history", "room": "r", "limit": 1000}, RoomHistory(room="r", limit=1000)),
        ({"type": "room.history", "room": "r", "before": 0}, RoomHistory(room="r", before=0)),
        ({"type": "room.history", "room": "r", "before": None}, RoomHistory(room="r")),
        ({"type": "receipt.seen", "room": "r", "offset": 0}, ReceiptSeen(room="r", offset=0)),
        (
            {"type": "receipt.delivered", "room": "r", "offset": 2**53},
            ReceiptDelivered(room="r", offset=2**53),
        ),
        (
            {"type": "room.join", "room": "r", "since": {"epoch": "", "offset": 0}},
            RoomJoin(room="r", since=Position(epoch="", offset=0)),
        ),
        ({"type": "room.join", "room": "r", "since": None}, RoomJoin(room="r")),
        (
            {"type": "auth", "device": "d", "positions": {}},
            Auth(device="d", positions={}),
        ),
        (
            {"type": "message.send", "room": "r", "body": "b", "temp_id": "t" * 256},
            MessageSend(room="r", body="b", temp_id="t" * 256),
        ),
        (
            {"type": "message.edit", "room": "r", "id": "i" * 256, "body": ""},
            MessageEdit(room="r", id="i" * 256, body=""),
        ),
    ],
    ids=[
        "room-256",
        "room-256-multibyte",
        "room-punctuation",
        "device-256",
        "text-256",
        "text-empty",
        "users-1000",
        "ref-null",
        "ref-empty-string",
        "ref-big-int",
        "limit-1",
        "limit-1000",
        "before-0",
        "before-null",
        "offset-0",
        "offset-big",
        "since-offset-0",
        "since-null",
        "positions-empty",
        "temp-id-256",
        "message-id-256",
    ],
)
def test_values_at_the_limits_are_accepted(frame: dict[str, Any], expected: Any) -> None:
    assert decode_client(_frame(frame)) == expected


@pytest.mark.parametrize("status", ["online", "away", "busy", "dnd", "invisible"])
def test_every_client_status_is_accepted(status: str) -> None:
    message = decode_client(_frame({"type": "status.set", "status": status}))
    assert isinstance(message, StatusSet)
    assert message.status == status


# --- not JSON, not an object, not UTF-8 ----------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" ",
        b"{",
        b'{"type": "heartbeat"',
        b"{'type': 'heartbeat'}",
        b'{"type": "heartbeat",}',
        b'{"type": "heartbeat"} {"type": "heartbeat"}',
        b'{"type": "heartbeat"} trailing',
        b"NaN",
        b'{"type": "room.join", "room": "a", "meta": {"x": NaN}}',
        b"heartbeat",
        b'{"type": "heartbeat", "ref": "\\ud800"}',  # lone surrogate escape
    ],
    ids=[
        "empty",
        "blank",
        "open-brace",
        "truncated",
        "single-quotes",
        "trailing-comma",
        "two-messages",
        "trailing-garbage",
        "nan",
        "nan-nested",
        "bare-word",
        "lone-surrogate-escape",
    ],
)
def test_invalid_json_is_bad_json(data: bytes) -> None:
    error = _reject(data)
    assert error.code is ErrorCode.BAD_JSON
    assert error.field is None
    assert error.ref is None


@pytest.mark.parametrize(
    "data",
    [b"[]", b'[{"type": "heartbeat", "ref": 1}]', b"1", b"-2.5", b'"heartbeat"', b"null", b"true"],
    ids=["array", "array-of-message", "int", "float", "string", "null", "bool"],
)
def test_json_that_is_not_an_object_is_bad_json(data: bytes) -> None:
    error = _reject(data)
    assert error.code is ErrorCode.BAD_JSON
    assert error.field is None
    assert error.ref is None


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark is not JSON
        b"\xc0\xaf",
        b'{"type": "heartbeat", "ref": "\xff"}',
        b'{"type": "heartbeat", "ref": "\xc3("}',
        b'{"type": "heartbeat", "ref": "\xed\xa0\x80"}',  # CESU-8 surrogate
        b'{"type": "heartbeat", "ref": "\xc0\xaf"}',  # overlong "/"
        b'{"type": "room.join", "room": "\xe2\x82"}',  # truncated sequence
        b'{"type": "room.join", "room": "lobby", "meta": {"k": "\xff"}}',
    ],
    ids=[
        "ff",
        "bom",
        "overlong-bare",
        "in-ref",
        "bad-continuation",
        "surrogate",
        "overlong-in-string",
        "truncated-in-room",
        "in-meta",
    ],
)
def test_invalid_utf8_is_bad_json(data: bytes) -> None:
    error = _reject(data)
    assert error.code is ErrorCode.BAD_JSON
    assert error.field is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b'{"\xff": 1}', "type"),
        (b'{"type": "room.join", "room": 5, "x": "\xff"}', "room"),
    ],
    ids=["in-key-without-type", "after-a-bad-field"],
)
def test_invalid_utf8_after_a_validation_error(data: bytes, field: str) -> None:
    """The first problem found is reported; the bytes that only the ``ref`` recovery pass
    reads must not turn it into another exception."""
    error = _reject(data)
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.field == field
    assert error.ref is None


# --- type ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["r", 7, None])
def test_missing_type_is_bad_request_on_type(ref: str | int | None) -> None:
    frame: dict[str, Any] = {"room": "lobby"}
    if ref is not None:
        frame["ref"] = ref
    error = _reject(_frame(frame))
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.field == "type"
    assert error.ref == ref


@pytest.mark.parametrize(
    "tag",
    [
        "nope",
        "",
        "Room.Join",
        "room.join ",
        "room.message",  # the send request is message.send
        "message.sent",
        "typing",  # server-only types are unknown to the client decoder
        "welcome",
        "member.joined",
        "error",
        "message",
        "message.ack",
        "message.edited",
        "receipt",
        "room.recovered",
        5,
        None,
        ["room.join"],
    ],
)
def test_unknown_type(tag: Any) -> None:
    error = _reject(_frame({"type": tag, "room": "lobby", "ref": "u1"}))
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.field == "type"
    assert error.ref == "u1"


# --- required fields -----------------------------------------------------------------------

MISSING_CASES = [(cls, name) for cls in CLIENT_TYPES for name in _required(cls)]


@pytest.mark.parametrize(
    ("cls", "name"), MISSING_CASES, ids=[f"{_tag(c)}-{n}" for c, n in MISSING_CASES]
)
@pytest.mark.parametrize("ref", ["req-9", 9])
def test_missing_required_field(cls: type[msgspec.Struct], name: str, ref: str | int) -> None:
    frame = _minimal_frame(cls)
    del frame[name]
    frame["ref"] = ref
    error = _reject(_frame(frame))
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.field == name
    assert error.ref == ref
    assert type(error.ref) is type(ref)
    assert name in error.message


def test_every_client_message_has_the_required_fields_the_doc_lists() -> None:
    required = {_tag(cls): _required(cls) for cls in CLIENT_TYPES}
    assert required == {
        "auth": ["device"],
        "heartbeat": [],
        "activity": [],
        "room.join": ["room"],
        "room.leave": ["room"],
        "room.members": ["room"],
        "room.count": ["room"],
        "room.meta": ["room", "meta"],
        "status.set": ["status"],
        "presence.subscribe": ["users"],
        "presence.unsubscribe": ["users"],
        "logout": [],
        "refresh": ["token"],
        "message.send": ["room", "body"],
        "message.edit": ["room", "id", "body"],
        "message.delete": ["room", "id"],
        "receipt.delivered": ["room", "offset"],
        "receipt.seen": ["room", "offset"],
        "room.read": ["room"],
        "room.history": ["room"],
        "typing.start": ["room"],
        "typing.stop": ["room"],
    }


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"type": "room.join", "room": "r", "since": {"offset": 1}}, "since.epoch"),
        ({"type": "room.join", "room": "r", "since": {"epoch": "e"}}, "since.offset"),
        ({"type": "room.join", "room": "r", "since": {}}, "since.epoch"),
        (
            {"type": "auth", "device": "d", "positions": {"r": {"epoch": "e"}}},
            "positions[...].offset",
        ),
        (
            {"type": "auth", "device": "d", "positions": {"r": {"offset": 0}}},
            "positions[...].epoch",
        ),
    ],
    ids=["since-epoch", "since-offset", "since-empty", "positions-offset", "positions-epoch"],
)
def test_missing_field_of_a_position_names_its_path(frame: dict[str, Any], field: str) -> None:
    error = _reject(_frame({**frame, "ref": "pos"}))
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.field == field
    assert error.ref == "pos"


# --- wrong types ---------------------------------------------------------------------------

_REF_WRONG: list[Any] = [True, False, 1.5, 1e3, [], {}, [1]]
_NAME_WRONG: list[Any] = [5, 1.5, True, None, [], {}, ["lobby"]]
_OPT_STR_WRONG: list[Any] = [5, True, [], {}]
_INT_WRONG: list[Any] = ["1", 1.5, True, None, [1]]
_BOOL_WRONG: list[Any] = [1, 0, "true", None, []]
_STATUS_WRONG: list[Any] = [1, True, None, [], {}, ["online"]]
_OPT_OBJ_WRONG: list[Any] = ["{}", 5, True, [], [{"a": 1}]]
_OPT_INT_WRONG: list[Any] = ["1", 1.5, True, [1], {}]
_BODY_WRONG: list[Any] = [5, 1.5, True, False, None, [], ["hi"], [{"text": "hi"}]]
_POSITION_WRONG: list[tuple[Any, str]] = [
    ("9c1e:41", "{f}"),
    (41, "{f}"),
    (True, "{f}"),
    ([], "{f}"),
    (["9c1e", 41], "{f}"),
    ({"epoch": 5, "offset": 41}, "{f}.epoch"),
    ({"epoch": None, "offset": 41}, "{f}.epoch"),
    ({"epoch": "9c1e", "offset": "41"}, "{f}.offset"),
    ({"epoch": "9c1e", "offset": 41.5}, "{f}.offset"),
    ({"epoch": "9c1e", "offset": None}, "{f}.offset"),
    ({"epoch": "9c1e", "offset": True}, "{f}.offset"),
]
_USERS_WRONG: list[tuple[Any, str]] = [
    ("alice", "users"),
    (5, "users"),
    (None, "users"),
    ({}, "users"),
    ({"alice": True}, "users"),
    ([5], "users[0]"),
    (["alice", None], "users[1]"),
    (["alice", "bob", ["carol"]], "users[2]"),
]

# (tag, field) -> [(wrong value, the field the error must name)]
WRONG_TYPES: dict[tuple[str, str], list[tuple[Any, str]]] = {
    ("auth", "device"): [(v, "device") for v in _NAME_WRONG],
    ("refresh", "token"): [(v, "token") for v in [5, True, None, [], {}]],
    ("auth", "token"): [(v, "token") for v in _OPT_STR_WRONG],
    ("auth", "user"): [(v, "user") for v in _OPT_STR_WRONG],
    ("auth", "device_info"): [(v, "device_info") for v in _OPT_OBJ_WRONG],
    ("auth", "resume"): [(v, "resume") for v in _OPT_STR_WRONG],
    ("auth", "protocol"): [(v, "protocol") for v in _INT_WRONG],
    ("auth", "positions"): [
        ("{}", "positions"),
        (5, "positions"),
        (True, "positions"),
        ([], "positions"),
        ([{"epoch": "e", "offset": 1}], "positions"),
        *[({"lobby": v}, f.format(f="positions[...]")) for v, f in _POSITION_WRONG],
        ({"lobby": None}, "positions[...]"),
    ],
    ("room.join", "room"): [(v, "room") for v in _NAME_WRONG],
    ("room.join", "meta"): [(v, "meta") for v in _OPT_OBJ_WRONG],
    ("room.join", "device_events"): [(v, "device_events") for v in _BOOL_WRONG],
    ("room.join", "since"): [(v, f.format(f="since")) for v, f in _POSITION_WRONG],
    ("room.leave", "room"): [(v, "room") for v in _NAME_WRONG],
    ("room.members", "room"): [(v, "room") for v in _NAME_WRONG],
    ("room.count", "room"): [(v, "room") for v in _NAME_WRONG],
    ("room.meta", "room"): [(v, "room") for v in _NAME_WRONG],
    ("room.meta", "meta"): [(v, "meta") for v in [*_OPT_OBJ_WRONG, None]],
    ("status.set", "status"): [(v, "status") for v in _STATUS_WRONG],
    ("status.set", "text"): [(v, "text") for v in _OPT_STR_WRONG],
    ("presence.subscribe", "users"): _USERS_WRONG,
    ("presence.unsubscribe", "users"): _USERS_WRONG,
    ("message.send", "room"): [(v, "room") for v in _NAME_WRONG],
    ("message.send", "body"): [(v, "body") for v in _BODY_WRONG],
    ("message.send", "temp_id"): [(v, "temp_id") for v in _OPT_STR_WRONG],
    ("message.edit", "room"): [(v, "room") for v in _NAME_WRONG],
    ("message.edit", "id"): [(v, "id") for v in _NAME_WRONG],
    ("message.edit", "body"): [(v, "body") for v in _BODY_WRONG],
    ("message.delete", "room"): [(v, "room") for v in _NAME_WRONG],
    ("message.delete", "id"): [(v, "id") for v in _NAME_WRONG],
    ("receipt.delivered", "room"): [(v, "room") for v in _NAME_WRONG],
    ("receipt.delivered", "offset"): [(v, "offset") for v in _INT_WRONG],
    ("receipt.seen", "room"): [(v, "room") for v in _NAME_WRONG],
    ("receipt.seen", "offset"): [(v, "offset") for v in _INT_WRONG],
    ("room.read", "room"): [(v, "room") for v in _NAME_WRONG],
    ("room.history", "room"): [(v, "room") for v in _NAME_WRONG],
    ("room.history", "limit"): [(v, "limit") for v in _INT_WRONG],
    ("room.history", "before"): [(v, "before") for v in _OPT_INT_WRONG],
    ("typing.start", "room"): [(v, "room") for v in _NAME_WRONG],
    ("typing.stop", "room"): [(v, "room") for v in _NAME_WRONG],
}
for _cls in CLIENT_TYPES:
    WRONG_TYPES[(_tag(_cls), "ref")] = [(v, "ref") for v in _REF_WRONG]

WRONG_CASES = [
    (tag, name, value, expected)
    for (tag, name), values in WRONG_TYPES.items()
    for value, expected in values
]


def test_wrong_type_table_covers_every_client_field() -> None:
    fields = {(_tag(cls), f.name) for cls in CLIENT_TYPES for f in msgspec.structs.fields(cls)}
    assert set(WRONG_TYPES) == fields


@pytest.mark.parametrize(
    ("tag", "name", "value", "expected"),
    WRONG_CASES,
    ids=[f"{t}-{n}-{v!r}"[:60] for t, n, v, _ in WRONG_CASES],
)
def test_wrong_type_is_bad_request_naming_the_field(
    tag: str, name: str, value: Any, expected: str
) -> None:
    frame = _minimal_frame(CLIENT_BY_TAG[tag])
    if name != "ref":
        frame["ref"] = "wt"
    frame[name] = value
    error = _reject(_frame(frame))
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.field == expected
    # A ref of the wrong type is not echoed; a good one is, whatever else is wrong.
    assert error.ref == (None if name == "ref" else "wt")


# --- out of range --------------------------------------------------------------------------

OUT_OF_RANGE: list[tuple[str, dict[str, Any], str]] = [
    ("empty-room", {"type": "room.join", "room": ""}, "room"),
    ("room-space", {"type": "room.join", "room": "my room"}, "room"),
    ("room-leading-space", {"type": "room.join", "room": " lobby"}, "room"),
    # "$" in a Python pattern also matches before a final newline: the Name pattern must not
    ("room-trailing-newline", {"type": "room.join", "room": "lobby\n"}, "room"),
    ("user-trailing-newline", {"type": "presence.subscribe", "users": ["bob\n"]}, "users[0]"),
    ("room-tab", {"type": "room.leave", "room": "a\tb"}, "room"),
    ("room-nbsp", {"type": "room.members", "room": "a\u00a0b"}, "room"),
    ("room-only-space", {"type": "room.count", "room": "   "}, "room"),
    # Control and invisible format characters (log and UI forgery): protocol.fields.ID_EXCLUDED
    ("room-esc", {"type": "room.join", "room": "a\x1b[31mred"}, "room"),
    ("room-bel", {"type": "room.join", "room": "a\x07"}, "room"),
    ("room-nul", {"type": "room.join", "room": "a\x00b"}, "room"),
    ("room-del", {"type": "room.join", "room": "a\x7fb"}, "room"),
    ("room-c1", {"type": "room.join", "room": "a\x9bb"}, "room"),
    ("room-rlo", {"type": "room.join", "room": "evil\u202etxt.exe"}, "room"),
    ("room-isolate", {"type": "room.join", "room": "a\u2067b"}, "room"),
    ("room-zero-width", {"type": "room.join", "room": "ad\u200bmin"}, "room"),
    ("room-bom", {"type": "room.join", "room": "\ufeffroom"}, "room"),
    ("user-lrm", {"type": "presence.subscribe", "users": ["bob\u200e"]}, "users[0]"),
    ("device-esc", {"type": "auth", "device": "d\x1b]0;x\x07"}, "device"),
    ("auth-user-esc", {"type": "auth", "device": "d", "user": "alice\x1b[2J"}, "user"),
    ("room-257", {"type": "room.join", "room": "x" * 257}, "room"),
    ("room-257-multibyte", {"type": "room.meta", "room": "é" * 257, "meta": {}}, "room"),
    ("empty-device", {"type": "auth", "device": ""}, "device"),
    ("device-space", {"type": "auth", "device": "my phone"}, "device"),
    ("device-257", {"type": "auth", "device": "d" * 257}, "device"),
    ("auth-user-space", {"type": "auth", "device": "d", "user": "a b"}, "user"),
    ("auth-user-empty", {"type": "auth", "device": "d", "user": ""}, "user"),
    ("status-offline", {"type": "status.set", "status": "offline"}, "status"),
    ("status-capitalised", {"type": "status.set", "status": "Online"}, "status"),
    ("status-empty", {"type": "status.set", "status": ""}, "status"),
    ("status-unknown", {"type": "status.set", "status": "sleeping"}, "status"),
    ("text-257", {"type": "status.set", "status": "busy", "text": "t" * 257}, "text"),
    ("users-empty", {"type": "presence.subscribe", "users": []}, "users"),
    (
        "users-1001",
        {"type": "presence.subscribe", "users": [f"u{i}" for i in range(1001)]},
        "users",
    ),
    ("unsub-users-empty", {"type": "presence.unsubscribe", "users": []}, "users"),
    (
        "unsub-users-1001",
        {"type": "presence.unsubscribe", "users": [f"u{i}" for i in range(1001)]},
        "users",
    ),
    ("user-empty", {"type": "presence.subscribe", "users": ["bob", ""]}, "users[1]"),
    ("user-space", {"type": "presence.subscribe", "users": ["b b"]}, "users[0]"),
    ("user-257", {"type": "presence.unsubscribe", "users": ["a", "b", "u" * 257]}, "users[2]"),
    ("send-empty-room", {"type": "message.send", "room": "", "body": "hi"}, "room"),
    ("send-room-space", {"type": "message.send", "room": "a b", "body": "hi"}, "room"),
    ("temp-id-empty", {"type": "message.send", "room": "r", "body": "b", "temp_id": ""}, "temp_id"),
    (
        "temp-id-space",
        {"type": "message.send", "room": "r", "body": "b", "temp_id": "t 1"},
        "temp_id",
    ),
    (
        "temp-id-257",
        {"type": "message.send", "room": "r", "body": "b", "temp_id": "t" * 257},
        "temp_id",
    ),
    ("edit-id-empty", {"type": "message.edit", "room": "r", "id": "", "body": "b"}, "id"),
    ("delete-id-space", {"type": "message.delete", "room": "r", "id": "m 1"}, "id"),
    ("delete-id-257", {"type": "message.delete", "room": "r", "id": "m" * 257}, "id"),
    (
        "delivered-offset-negative",
        {"type": "receipt.delivered", "room": "r", "offset": -1},
        "offset",
    ),
    ("seen-offset-negative", {"type": "receipt.seen", "room": "r", "offset": -1}, "offset"),
    ("read-room-tab", {"type": "room.read", "room": "a\tb"}, "room"),
    ("history-limit-0", {"type": "room.history", "room": "r", "limit": 0}, "limit"),
    ("history-limit-negative", {"type": "room.history", "room": "r", "limit": -5}, "limit"),
    ("history-limit-1001", {"type": "room.history", "room": "r", "limit": 1001}, "limit"),
    ("history-before-negative", {"type": "room.history", "room": "r", "before": -1}, "before"),
    ("typing-room-empty", {"type": "typing.start", "room": ""}, "room"),
    ("typing-stop-room-257", {"type": "typing.stop", "room": "x" * 257}, "room"),
    (
        "since-offset-negative",
        {"type": "room.join", "room": "r", "since": {"epoch": "e", "offset": -1}},
        "since.offset",
    ),
    (
        "positions-offset-negative",
        {"type": "auth", "device": "d", "positions": {"r": {"epoch": "e", "offset": -1}}},
        "positions[...].offset",
    ),
]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [(frame, field) for _, frame, field in OUT_OF_RANGE],
    ids=[name for name, _, _ in OUT_OF_RANGE],
)
@pytest.mark.parametrize("ref", ["range-1", 1001])
def test_out_of_range_is_bad_request_naming_the_field(
    frame: dict[str, Any], expected: str, ref: str | int
) -> None:
    error = _reject(_frame({**frame, "ref": ref}))
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.field == expected
    assert error.ref == ref
    assert type(error.ref) is type(ref)


# --- ref recovery --------------------------------------------------------------------------

REJECTED_FRAMES: list[tuple[str, dict[str, Any], ErrorCode]] = [
    ("unknown-type", {"type": "nope"}, ErrorCode.UNKNOWN_TYPE),
    ("missing-type", {"room": "lobby"}, ErrorCode.BAD_REQUEST),
    ("missing-field", {"type": "room.join"}, ErrorCode.BAD_REQUEST),
    ("wrong-type", {"type": "room.join", "room": 5}, ErrorCode.BAD_REQUEST),
    ("out-of-range", {"type": "status.set", "status": "offline"}, ErrorCode.BAD_REQUEST),
]


@pytest.mark.parametrize(
    ("frame", "code"),
    [(f, c) for _, f, c in REJECTED_FRAMES],
    ids=[n for n, _, _ in REJECTED_FRAMES],
)
@pytest.mark.parametrize(
    "ref",
    ["abc", "", "ünï", 0, -5, 123456789, 2**70],
    ids=["str", "empty-str", "unicode-str", "zero", "negative", "int", "bigint"],
)
def test_ref_is_recovered_from_a_rejected_frame(
    frame: dict[str, Any], code: ErrorCode, ref: str | int
) -> None:
    # ref first and last: recovery must not depend on where it sits in the object
    for data in (_frame({"ref": ref, **frame}), _frame({**frame, "ref": ref})):
        error = _reject(data)
        assert error.code is code
        assert error.ref == ref
        assert type(error.ref) is type(ref)


@pytest.mark.parametrize(
    ("frame", "code"),
    [(f, c) for _, f, c in REJECTED_FRAMES],
    ids=[n for n, _, _ in REJECTED_FRAMES],
)
@pytest.mark.parametrize("ref", [True, False, None, 1.5, [1], {"id": 1}])
def test_a_ref_that_is_not_a_string_or_int_is_not_echoed(
    frame: dict[str, Any], code: ErrorCode, ref: Any
) -> None:
    error = _reject(_frame({**frame, "ref": ref}))
    assert error.ref is None
    assert error.code in DECODE_CODES


def test_ref_of_a_valid_request_is_kept() -> None:
    assert decode_client(b'{"type":"heartbeat","ref":"x-1"}').ref == "x-1"
    assert decode_client(b'{"type":"heartbeat","ref":42}').ref == 42
    assert decode_client(b'{"type":"heartbeat"}').ref is None


def test_no_ref_from_a_frame_that_is_not_an_object() -> None:
    assert _reject(b'[{"type": "nope", "ref": "r"}]').ref is None
    assert _reject(b'{"type": "nope", "ref": "r"').ref is None


# --- frame size ----------------------------------------------------------------------------


def test_frame_at_the_limit_is_accepted() -> None:
    data = _frame({"type": "room.join", "room": "lobby", "ref": "big"})
    assert decode_client(data, max_bytes=len(data)) == RoomJoin(room="lobby", ref="big")
    assert decode_client(data, max_bytes=None) == RoomJoin(room="lobby", ref="big")


def test_frame_over_the_limit_is_too_large() -> None:
    data = _frame({"type": "room.join", "room": "lobby", "meta": {"x": "y" * 500}, "ref": "big"})
    error = _reject(data, max_bytes=len(data) - 1)
    assert error.code is ErrorCode.FRAME_TOO_LARGE
    assert error.field is None
    assert error.ref is None  # an oversize frame is not read at all
    assert str(len(data)) in error.message
    assert str(len(data) - 1) in error.message


def test_size_is_checked_before_parsing() -> None:
    error = _reject(b"\xff" * 2000, max_bytes=1024)
    assert error.code is ErrorCode.FRAME_TOO_LARGE


def test_size_counts_bytes_not_characters() -> None:
    data = _frame({"type": "room.join", "room": "é" * 100})  # 200 bytes of room
    assert len(data) > 200
    assert _reject(data, max_bytes=150).code is ErrorCode.FRAME_TOO_LARGE


# --- convert_auth (connect-URL parameters) -------------------------------------------------


def test_convert_auth_from_query_strings() -> None:
    auth = convert_auth({"device": "phone", "token": "jwt", "protocol": "1", "resume": "rt"})
    assert auth == Auth(device="phone", token="jwt", protocol=1, resume="rt")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"token": "jwt"}, "device"),
        ({"device": "", "token": "jwt"}, "device"),
        ({"device": "my phone", "token": "jwt"}, "device"),
        ({"device": "d", "protocol": "one"}, "protocol"),
        ({"device": "d", "user": "a b"}, "user"),
        ({"device": "d", "user": "alice\x1b[0m"}, "user"),
        ({"device": "d\u202e", "user": "alice"}, "device"),
    ],
)
def test_convert_auth_names_the_bad_parameter(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(ProtocolError) as info:
        convert_auth(fields)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert info.value.field == expected
    assert info.value.ref is None


# --- properties ----------------------------------------------------------------------------


def test_ids_may_hold_any_other_character() -> None:
    # Not ASCII only: letters, emoji, and the joiners and variation selectors inside them.
    for room in ("café", "日本語", "👩\u200d💻", "a\ufe0fb", "a.b:c/d#e"):
        msg = decode_client(msgspec.json.encode({"type": "room.join", "room": room}))
        assert isinstance(msg, RoomJoin) and msg.room == room


def _check_decode(data: bytes) -> None:
    """decode_client returns a client message or raises ProtocolError, and nothing else."""
    try:
        message = decode_client(data, max_bytes=4096)
    except ProtocolError as exc:
        assert exc.code in {*DECODE_CODES, ErrorCode.FRAME_TOO_LARGE}
        assert exc.fatal is False
        assert exc.ref is None or (isinstance(exc.ref, str | int) and not isinstance(exc.ref, bool))
    else:
        assert isinstance(message, CLIENT_TYPES)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_decode_client_on_arbitrary_bytes(data: bytes) -> None:
    _check_decode(data)


_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_field_names = st.sampled_from(
    [
        "room",
        "meta",
        "users",
        "status",
        "text",
        "device",
        "token",
        "user",
        "ref",
        "protocol",
        "body",
        "temp_id",
        "id",
        "offset",
        "limit",
        "before",
        "since",
        "positions",
    ]
)


@st.composite
def _near_frames(draw: st.DrawFn) -> bytes:
    """JSON objects that look like requests, optionally with random bytes spliced in."""
    obj: dict[str, Any] = {"type": draw(st.sampled_from(sorted(CLIENT_BY_TAG)) | st.text())}
    obj.update(draw(st.dictionaries(_field_names, _json, max_size=4)))
    data = msgspec.json.encode(obj)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 3))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at + cut :]
    return data


@settings(max_examples=400, deadline=None)
@given(_near_frames())
def test_decode_client_on_damaged_json_frames(data: bytes) -> None:
    _check_decode(data)


# --- free-form values: depth and encodability ---------------------------------------------


def _nested(levels: int, inner: Any = 1, *, lists: bool = False) -> Any:
    value: Any = inner
    for _ in range(levels):
        value = [value] if lists else {"a": value}
    return value


@pytest.mark.parametrize(
    ("tag", "field"),
    [("auth", "device_info"), ("room.join", "meta"), ("room.meta", "meta"),
     ("message.send", "body"), ("message.edit", "body")],
)  # fmt: skip
def test_free_form_fields_nest_at_most_max_nesting_levels(tag: str, field: str) -> None:
    base: dict[str, Any] = {"type": tag, "room": "r", "id": "m", "device": "d", "ref": "x"}
    decode_client(_frame({**base, field: _nested(MAX_NESTING)}))
    error = _reject(_frame({**base, field: _nested(MAX_NESTING + 1)}))
    assert (error.code, error.field, error.ref) == (ErrorCode.BAD_REQUEST, field, "x")
    assert f"deeper than {MAX_NESTING} levels" in error.message


def test_arrays_count_as_levels_and_scalars_do_not() -> None:
    check_free_form({"a": _nested(MAX_NESTING - 1, "deepest leaf", lists=True)}, "meta")
    with pytest.raises(ProtocolError) as info:
        check_free_form({"a": _nested(MAX_NESTING, lists=True)}, "meta")
    assert "meta.a" + "[0]" * (MAX_NESTING - 1) in info.value.message


@pytest.mark.parametrize(
    ("meta", "code", "field"),
    [
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, ErrorCode.BAD_JSON, None),
        # An array where an object belongs is a type error before it is a depth one.
        (b"[" * 5000 + b"]" * 5000, ErrorCode.BAD_REQUEST, "meta"),
    ],
    ids=["object", "array"],
)
def test_a_frame_too_deep_to_parse_is_an_error_not_a_crash(
    meta: bytes, code: ErrorCode, field: str | None
) -> None:
    error = _reject(b'{"type": "room.join", "room": "r", "meta": ' + meta + b', "ref": 3}')
    assert (error.code, error.field) == (code, field)


@pytest.mark.parametrize(
    "value",
    [{"a": "\ud800"}, {"\udc00": 1}, {"a": ["ok", {"b": "x\ud800y"}]}],
    ids=["value", "key", "nested"],
)
def test_strings_that_utf8_cannot_encode_are_refused_by_convert_auth(value: Any) -> None:
    # The connect URL's device_info is parsed by json.loads, which accepts lone surrogates.
    with pytest.raises(ProtocolError) as info:
        convert_auth({"type": "auth", "device": "d", "user": "u", "device_info": value})
    assert (info.value.code, info.value.field) == (ErrorCode.BAD_REQUEST, "device_info")
    info.value.message.encode()  # the error itself can be sent


def test_convert_auth_accepts_ordinary_device_info() -> None:
    info = {"app": "ios", "név": "Zoë ☃", "v": [3, 2], "deep": _nested(MAX_NESTING - 1)}
    auth = convert_auth({"type": "auth", "device": "d", "user": "u", "device_info": info})
    assert auth.device_info == info
