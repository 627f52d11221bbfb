"""Event export endpoints: the sinks with their counters, and the dead letters (list, replay,
discard). On the memory store they are the node's own; with Valkey/Redis the dead letters are
in the store (any node lists and replays them) and the counters are the answering node's
(the dispatching node's show the deliveries; GET /v1/events/sinks says which node leads)."""

from __future__ import annotations

import msgspec

from presenced.api.models import Cursor, DeadLetterList, Limit, Replayed, SinkInfo, SinkList
from presenced.http.errors import not_found
from presenced.http.routing import DEFAULT_LIMIT, Call, Route, decode_cursor, page

__all__ = ["ROUTES"]


class DeadLettersQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sink: str | None = None
    cursor: Cursor | None = None
    limit: Limit = DEFAULT_LIMIT


async def sinks(call: Call[None, None]) -> SinkList:
    export = call.node.export
    listed = [SinkInfo(**msgspec.structs.asdict(r.stats)) for r in export.runners]
    feed = export.feed
    dispatching = feed.leading if feed is not None else bool(export.runners)
    return SinkList(node=call.node.node_id, dispatching=dispatching, sinks=listed)


async def dead_letters(call: Call[DeadLettersQuery, None]) -> DeadLetterList:
    q = call.query
    letters = await call.node.export.list_dead(q.sink)
    after = decode_cursor(q.cursor)
    if after is not None:  # ids are in the order the letters were made: resume after it
        ids = [d.id for d in letters]
        letters = letters[ids.index(after) + 1 :] if after in ids else []
    chosen = letters[: q.limit + 1]
    return DeadLetterList(
        node=call.node.node_id,
        dead_letters=chosen[: q.limit],
        next_cursor=page([d.id for d in chosen], q.limit),
    )


async def replay(call: Call[None, None]) -> Replayed:
    letter = await call.node.export.replay_dead(call.path["letter"])
    if letter is None:
        raise not_found(f"no dead letter {call.path['letter']!r} on this node", "path.letter")
    return Replayed(id=letter.id, sink=letter.sink, events=len(letter.events))


async def discard(call: Call[None, None]) -> Replayed:
    letter = await call.node.export.discard_dead(call.path["letter"])
    if letter is None:
        raise not_found(f"no dead letter {call.path['letter']!r} on this node", "path.letter")
    return Replayed(id=letter.id, sink=letter.sink, events=len(letter.events))


ROUTES: list[Route] = [
    Route(
        "GET",
        "/v1/events/sinks",
        sinks,
        "read",
        "This node's event sinks, with their counters",
        SinkList,
        "events",
    ),
    Route(
        "GET",
        "/v1/events/dead-letters",
        dead_letters,
        "admin",
        "This node's dead letters: batches a sink refused every try",
        DeadLetterList,
        "events",
        query=DeadLettersQuery,
        description="Oldest first. At most 10,000 are kept per node; the oldest go first.",
    ),
    Route(
        "POST",
        "/v1/events/dead-letters/{letter}/replay",
        replay,
        "admin",
        "Send a dead letter's events again, ahead of what its sink has queued",
        Replayed,
        "events",
        status=202,
        errors=(404,),
    ),
    Route(
        "DELETE",
        "/v1/events/dead-letters/{letter}",
        discard,
        "admin",
        "Drop a dead letter",
        Replayed,
        "events",
        errors=(404,),
    ),
]
