"""docs/protocol.md cannot fall behind the code.

Every message ``type`` of the client and server unions has its own section in the document,
whose field table lists exactly the struct's fields and marks exactly its required ones;
every ErrorCode, CloseCode and LeaveReason has its row; every JSON example decodes as the
message it illustrates. A field, message or code added to src/presenced/protocol/ without a
line in the contract fails here, and so does a doc entry for something that no longer exists.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

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
    """``### `tag` `` subsections of a section, by tag."""
    parts = re.split(r"^### `([^`]+)`\s*$", section, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _field_rows(text: str) -> dict[str, str]:
    """Rows of a field table: backquoted name -> the "Req." column."""
    rows = {}
    for match in _ROW.finditer(text):
        cells = [c.strip() for c in match["rest"].split("|")]
        rows[match["name"]] = cells[1] if len(cells) > 1 else ""
    return rows


def _code_blocks(lang: str) -> list[str]:
    return [m["body"] for m in _FENCE.finditer(DOC) if m["lang"] == lang]


CLIENT_SECTIONS = _message_sections(_section("Client messages"))
SERVER_SECTIONS = _message_sections(_section("Server messages"))


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
        if "type" not in obj:
            msgspec.json.decode(body, type=Member)
        elif obj["type"] in CLIENT_SECTIONS and obj["type"] not in SERVER_SECTIONS:
            decode_client(body)
        elif obj["type"] in SERVER_SECTIONS and obj["type"] not in CLIENT_SECTIONS:
            decode_server(body)
        else:  # room.members, room.count, room.meta: a request has a "room" and no reply field
            reply_only = {"version", "members", "count"}
            (decode_server if reply_only & set(obj) else decode_client)(body)


@pytest.mark.parametrize(
    ("heading", "union", "decode"),
    [
        ("Client messages", CLIENT_TYPES, decode_client),
        ("Server messages", SERVER_TYPES, decode_server),
    ],
    ids=["client", "server"],
)
def test_every_message_section_has_an_example_of_itself(
    heading: str,
    union: tuple[type[msgspec.Struct], ...],
    decode: Callable[[str], msgspec.Struct],
) -> None:
    base = DOC.index(f"## {heading}\n")
    for tag in (_tag(cls) for cls in union):
        start = DOC.index(f"### `{tag}`", base)
        end = re.compile(r"^#{2,3} ", re.M).search(DOC, start + 1)
        text = DOC[start : end.start() if end else len(DOC)]
        examples = [m["body"] for m in _FENCE.finditer(text) if m["lang"] == "json"]
        assert examples, f"no example for {tag}"
        for body in examples:
            assert _tag(type(decode(body))) == tag


def test_sequence_diagrams() -> None:
    diagrams = _code_blocks("mermaid")
    assert len(diagrams) >= 5
    assert all(d.lstrip().startswith("sequenceDiagram") for d in diagrams)
    text = "\n".join(diagrams)
    for event in ("grace_expired", "inactivity_timeout", "4006", "resumed"):
        assert event in text
