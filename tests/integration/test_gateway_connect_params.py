"""Generated bad connect URLs over a real socket: each is answered with a clear refusal (an
``error`` naming the field, the connection left open to send a valid ``auth``; or a fatal
code for a protocol the server does not speak), nothing of it is left behind, and a
bystander in a room is served on and sees no one come. The unit-level property tests of the
parser are tests/unit/test_connect_params.py."""

from __future__ import annotations

import random
from urllib.parse import quote

from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.messages import Error, HeartbeatAck, Welcome
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory

# Each bad part is (parameter, value, the field the error must name).
BAD_PARTS: list[tuple[str, str, str]] = [
    ("device", "", "device"),
    ("device", "two words", "device"),
    ("device", "d" * 300, "device"),
    ("user", "", "user"),
    ("user", "tab\there", "user"),
    ("device_info", "not json", "device_info"),
    ("device_info", "[1, 2]", "device_info"),
    ("device_info", "null", "device_info"),
    ("device_info", "NaN", "device_info"),
    ("device_info", '{"a":' * 40 + "1" + "}" * 40, "device_info"),
    ("device_info", "[" * 5000, "device_info"),
    ("device_info", '{"x": "\\ud800"}', "device_info"),
    ("protocol", "one", "protocol"),
    ("protocol", "1.5", "protocol"),
    ("positions", "{}", "positions"),
]  # (an empty `resume` is no refusal: an unusable resume opens a new session, as documented)


SEED = 20240610


def bad_urls(server: RunningServer, count: int, seed: int) -> list[tuple[str, set[str]]]:
    """``count`` URLs, each with credentials and one to three bad parts (its fields), the
    rest filled with good values or noise the server ignores, in a shuffled order."""
    rng = random.Random(seed)
    urls = []
    for i in range(count):
        bad = rng.sample(BAD_PARTS, rng.randint(1, 3))
        params = {"user": f"fuzz{i}", "device": "d1"}
        for key, value, _ in bad:
            params[key] = value
        if rng.random() < 0.5:
            params[f"x{rng.randint(0, 99)}"] = rng.choice(["", "%", "&&", "\u00e9", "=="])
        pairs = list(params.items())
        rng.shuffle(pairs)
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
        urls.append((f"{server.url}?{query}", {field for _, _, field in bad}))
    return urls


async def test_generated_bad_connect_urls_are_refused_clearly(make_server: ServerFactory) -> None:
    server = await make_server(auth_timeout=5.0)  # the refused ones must not time out first
    bystander = await ProtocolClient.connect(f"{server.url}?user=carol&device=w")
    await bystander.wait_for("welcome")
    await bystander.request({"type": "room.join", "room": "lobby"})
    seen = len(bystander.received)

    for url, fields in [
        *bad_urls(server, 12, seed=SEED),
        (f"{server.url}?user=dave&device=d&protocol=99", {"protocol"}),
    ]:
        client = await ProtocolClient.connect(url)
        error = await client.wait_for("error")
        assert isinstance(error, Error), url
        assert not client.of_type("welcome"), url
        if error.code == ErrorCode.UNSUPPORTED_PROTOCOL:  # the one fatal refusal
            assert await client.wait_closed() == CloseCode.UNSUPPORTED_PROTOCOL
            continue
        assert error.code == ErrorCode.BAD_REQUEST, (url, error)
        assert error.field in fields, (url, error)  # it names one of the bad parameters
        # Still open and unauthenticated: a valid auth on the same socket is welcomed.
        reply = await client.request({"type": "auth", "user": "erin", "device": "ok"})
        assert isinstance(reply, Welcome) and reply.user == "erin", (url, reply)
        await client.send({"type": "logout"})
        assert await client.wait_closed() == CloseCode.NORMAL

    ack = await bystander.request({"type": "heartbeat"})
    assert isinstance(ack, HeartbeatAck)
    members = await bystander.request({"type": "room.members", "room": "lobby"})
    assert [m.user for m in getattr(members, "members", [])] == ["carol"]
    noticed = {type(m).__name__ for m in bystander.received[seen:]}
    assert not noticed & {"MemberJoined", "MemberLeft"}  # no one of them ever got in
    assert server.node.session_count == 1
    await bystander.close()
