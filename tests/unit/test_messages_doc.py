"""docs/protocol.md cannot fall behind the code.

Every message ``type`` of the client and server unions has exactly one section in the
document (presence messages under "Client messages" / "Server messages", messaging ones under
"Messaging client messages" / "Messaging server messages"), whose field table lists exactly
the struct's fields and marks exactly its required ones; the shared objects (member, position)
have their tables too; every ErrorCode, CloseCode and LeaveReason has its row; the messaging
settings table gives each setting's real default; the lists of replies that echo ``ref`` and
of events that never carry it are exact; every JSON example decodes as the message it
illustrates. A field, message, code or setting added to src/presenced/ without a line in the
contract fails here, and so does a doc entry for something that no longer exists.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from presenced.config import Settings
from presenced.protocol.chat import Position
from presenced.protocol.codec import decode_client, decode_server
from presenced.protocol.codes import CloseCode, ErrorCode, LeaveReason
from presenced.protocol.messages import ClientMessage, Member, ServerMessage

__all__: list[str] = []

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
DOC = DOC_PATH.read_text(encoding="utf-8")

CLIENT_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(ClientMessage)
SERVER_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(ServerMessage)

_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M)
_ROW = re.compile(r"^\|\s*`(?P<name>[^`]+)`\s*\|(?P<rest>.*)$", re.M)


def _tag(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def _tags_via_inspect(union: object) -> list[str]:
    """The tags as msgspec itself reports them (independent of the struct config)."""
    info = msgspec.inspect.type_info(union)
    assert isinstance(info, msgspec.inspect.UnionType)
    tags = []
    for member in info.types:
        assert isinstance(member, msgspec.inspect.StructType)
        assert member.tag_field == "type"
        assert isinstance(member.tag, str)
        tags.append(member.tag)
    return tags


def _without_fences(text: str) -> str:
    return _FENCE.sub("", text)


def _section(heading: str, level: int = 2) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    text = _without_fences(DOC)
    marks = "#" * level
    match = re.search(rf"^{marks} {re.escape(heading)}\s*$", text, re.M)
    assert match, f"docs/protocol.md has no section {marks} {heading}"
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


def _message_sections(section: str) -> dict[str, str]:
    """``### `tag` `` subsections of a section, by tag (each tag at most once)."""
    parts = re.split(r"^### `([^`]+)`\s*$", section, flags=re.M)
    tags = [parts[i] for i in range(1, len(parts), 2)]
    assert len(tags) == len(set(tags)), f"a message documented twice: {tags}"
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _merge(*sections: dict[str, str]) -> dict[str, str]:
    """Message sections of several parts; a tag may be documented in only one of them."""
    merged: dict[str, str] = {}
    for part in sections:
        twice = set(merged) & set(part)
        assert not twice, f"documented in two parts: {sorted(twice)}"
        merged.update(part)
    return merged


def _field_rows(text: str) -> dict[str, str]:
    """Rows of a field table: backquoted name -> the "Req." column."""
    rows = {}
    for match in _ROW.finditer(text):
        cells = [c.strip() for c in match["rest"].split("|")]
        rows[match["name"]] = cells[1] if len(cells) > 1 else ""
    return rows


def _code_blocks(lang: str) -> list[str]:
    return [m["body"] for m in _FENCE.finditer(DOC) if m["lang"] == lang]


# Presence messages and messaging messages are documented in their own parts.
CLIENT_HEADINGS = ("Client messages", "Messaging client messages")
SERVER_HEADINGS = ("Server messages", "Messaging server messages")
CLIENT_SECTIONS = _merge(*(_message_sections(_section(h)) for h in CLIENT_HEADINGS))
SERVER_SECTIONS = _merge(*(_message_sections(_section(h)) for h in SERVER_HEADINGS))
MESSAGING_CLIENT = _message_sections(_section("Messaging client messages"))
MESSAGING_SERVER = _message_sections(_section("Messaging server messages"))

# The settings that limit messaging, as the messaging spec names them.
MESSAGING_SETTINGS = (
    "history_size",
    "history_ttl",
    "max_message_bytes",
    "message_rate",
    "message_burst",
    "typing_timeout",
    "typing_throttle",
)


def test_tags_from_inspect_match_the_struct_config() -> None:
    assert _tags_via_inspect(ClientMessage) == [_tag(c) for c in CLIENT_TYPES]
    assert _tags_via_inspect(ServerMessage) == [_tag(c) for c in SERVER_TYPES]


@pytest.mark.parametrize("tag", [_tag(c) for c in CLIENT_TYPES + SERVER_TYPES])
def test_every_type_tag_appears_in_the_doc(tag: str) -> None:
    assert f"`{tag}`" in DOC


def test_client_sections_are_exactly_the_client_messages() -> None:
    assert sorted(CLIENT_SECTIONS) == sorted(_tag(c) for c in CLIENT_TYPES)


def test_server_sections_are_exactly_the_server_messages() -> None:
    assert sorted(SERVER_SECTIONS) == sorted(_tag(c) for c in SERVER_TYPES)


def test_messaging_messages_are_in_the_messaging_part() -> None:
    """Every struct of protocol/chat.py is documented in the Messaging part, and only those."""
    chat = "presenced.protocol.chat"
    assert sorted(MESSAGING_CLIENT) == sorted(_tag(c) for c in CLIENT_TYPES if c.__module__ == chat)
    assert sorted(MESSAGING_SERVER) == sorted(_tag(c) for c in SERVER_TYPES if c.__module__ == chat)


def _check_table(cls: type[msgspec.Struct], text: str) -> None:
    rows = _field_rows(text)
    fields = msgspec.structs.fields(cls)
    assert sorted(rows) == sorted(f.name for f in fields), f"field table of {cls.__name__}"
    for f in fields:
        required = rows[f.name].lower()
        assert required in {"yes", "no"}, f"{cls.__name__}.{f.name}: Req. column {required!r}"
        assert (required == "yes") == f.required, f"{cls.__name__}.{f.name}: required?"


@pytest.mark.parametrize("cls", CLIENT_TYPES, ids=_tag)
def test_client_field_table_matches_the_struct(cls: type[msgspec.Struct]) -> None:
    _check_table(cls, CLIENT_SECTIONS.get(_tag(cls), ""))


@pytest.mark.parametrize("cls", SERVER_TYPES, ids=_tag)
def test_server_field_table_matches_the_struct(cls: type[msgspec.Struct]) -> None:
    _check_table(cls, SERVER_SECTIONS.get(_tag(cls), ""))


def test_member_object_table_matches_the_struct() -> None:
    _check_table(Member, _section("Member object", level=3))


def test_position_object_table_matches_the_struct() -> None:
    _check_table(Position, _section("Position object", level=3))


def test_messaging_settings_table_gives_the_real_defaults() -> None:
    """Each setting that limits messaging has a row whose Default column is the code's."""
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    rows: dict[str, str] = {}
    for match in _ROW.finditer(_section("Messaging settings", level=3)):
        rows[match["name"]] = match["rest"].split("|")[0].strip().strip("`")
    assert sorted(rows) == sorted(MESSAGING_SETTINGS)
    for name, cell in rows.items():
        default = defaults[name]
        assert isinstance(default, int | float), name
        assert float(cell.split()[0]) == default, f"{name}: doc says {cell!r}, code {default!r}"


def _backquoted_tags(bullet: str, tags: set[str]) -> set[str]:
    text = _section("Requests, replies and `ref`")
    match = re.search(rf"^- {re.escape(bullet)}(?P<body>.*?)(?=^- |\Z)", text, re.M | re.S)
    assert match, f"no bullet {bullet!r}"
    return set(re.findall(r"`([^`]+)`", match["body"])) & tags


def test_the_lists_of_replies_and_events_are_exact() -> None:
    """Server messages with a ``ref`` field are listed as replies; the others as events."""
    tags = {_tag(c) for c in SERVER_TYPES}
    with_ref = {_tag(c) for c in SERVER_TYPES if "ref" in c.__struct_fields__}
    assert _backquoted_tags("Replies that echo `ref`:", tags) == with_ref
    assert _backquoted_tags("Events (", tags) == tags - with_ref


def test_every_error_code_has_a_row() -> None:
    rows = _field_rows(_section("Error codes", level=3))
    assert sorted(rows) == sorted(code.value for code in ErrorCode)


def test_every_close_code_has_a_row() -> None:
    text = _section("Close codes")
    rows = {
        (int(m["code"]), m["name"])
        for m in re.finditer(r"^\|\s*(?P<code>\d{4})\s*\|\s*`(?P<name>[A-Z_]+)`\s*\|", text, re.M)
    }
    assert rows == {(code.value, code.name) for code in CloseCode}


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: str(c.value))
def test_every_close_code_value_appears_in_the_doc(code: CloseCode) -> None:
    assert re.search(rf"\b{code.value}\b", DOC)


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_value_appears_in_the_doc(code: ErrorCode) -> None:
    assert f"`{code.value}`" in DOC


def test_every_leave_reason_has_a_row() -> None:
    rows = _field_rows(_section("Leave reasons", level=3))
    assert sorted(rows) == sorted(reason.value for reason in LeaveReason)


def test_every_json_example_decodes_as_a_message() -> None:
    blocks = _code_blocks("json")
    assert len(blocks) >= len(CLIENT_TYPES) + len(SERVER_TYPES)
    for body in blocks:
        obj = msgspec.json.decode(body)
        assert isinstance(obj, dict), body
        if "type" not in obj:  # a shared object: a position or a member
            shared: type[msgspec.Struct] = Position if "epoch" in obj else Member
            msgspec.json.decode(body, type=shared)
            assert set(obj) <= set(shared.__struct_fields__), body  # no unknown (mistyped) field
        elif obj["type"] in CLIENT_SECTIONS and obj["type"] not in SERVER_SECTIONS:
            decode_client(body)
        elif obj["type"] in SERVER_SECTIONS and obj["type"] not in CLIENT_SECTIONS:
            decode_server(body)
        else:
            # room.members, room.count, room.meta, room.read, room.history: a request has a
            # "room" (and limit/before) and none of the reply's fields.
            reply_only = {"version", "members", "count", "epoch", "last_read", "unread", "messages"}
            (decode_server if reply_only & set(obj) else decode_client)(body)


def _heading_start(heading: str) -> int:
    match = re.search(rf"^## {re.escape(heading)}\n", DOC, re.M)
    assert match, f"no section ## {heading}"
    return match.start()


@pytest.mark.parametrize(
    ("headings", "union", "decode"),
    [
        (CLIENT_HEADINGS, CLIENT_TYPES, decode_client),
        (SERVER_HEADINGS, SERVER_TYPES, decode_server),
    ],
    ids=["client", "server"],
)
def test_every_message_section_has_an_example_of_itself(
    headings: tuple[str, ...],
    union: tuple[type[msgspec.Struct], ...],
    decode: Callable[[str], msgspec.Struct],
) -> None:
    next_part = re.compile(r"^## ", re.M)
    parts = []
    for heading in headings:
        base = _heading_start(heading)
        end = next_part.search(DOC, base + 1)
        parts.append(DOC[base : end.start() if end else len(DOC)])
    for tag in (_tag(cls) for cls in union):
        (part,) = [p for p in parts if re.search(rf"^### `{re.escape(tag)}`$", p, re.M)]
        start = part.index(f"### `{tag}`")
        end = re.compile(r"^#{2,3} ", re.M).search(part, start + 1)
        text = part[start : end.start() if end else len(part)]
        examples = [m["body"] for m in _FENCE.finditer(text) if m["lang"] == "json"]
        assert examples, f"no example for {tag}"
        for body in examples:
            assert _tag(type(decode(body))) == tag


def test_sequence_diagrams() -> None:
    diagrams = _code_blocks("mermaid")
    assert len(diagrams) >= 8
    assert all(d.lstrip().startswith("sequenceDiagram") for d in diagrams)
    text = "\n".join(diagrams)
    for event in ("grace_expired", "inactivity_timeout", "4006", "resumed"):
        assert event in text


def _diagram_with(*needles: str) -> str:
    found = [d for d in _code_blocks("mermaid") if all(n in d for n in needles)]
    assert found, f"no sequence diagram shows all of {needles}"
    return found[0]


def test_messaging_sequence_diagrams() -> None:
    """The three messaging flows the contract must draw."""
    # Send with ack; a re-sent temp_id is acknowledged as a duplicate and delivered once.
    send = _diagram_with('"type":"message.send"', '"type":"message.ack"', '"duplicate":true')
    assert '"duplicate":false' in send
    assert send.count('"temp_id":"t-1"') >= 3
    # A drop and a resume with positions: room.recovered with recovered true.
    resume = _diagram_with('"positions"', '"type":"room.recovered"', '"recovered":true')
    assert '"resumed":true' in resume
    # Typing: start, a throttled renewal, a renewal, and the auto-stop after typing_timeout.
    typing = _diagram_with('"type":"typing.start"', '"type":"typing"', "typing_timeout")
    assert "typing_throttle" in typing
    assert '"users":[]' in typing


def test_no_part_of_the_doc_says_messaging_is_missing() -> None:
    """Messaging is in protocol 1: no leftover note that it comes later."""
    assert not re.search(r"later protocol version|coming later|not (yet )?replayed", DOC)
