"""The live dashboard (admin port, /dashboard/) in real Chromium: it asks for the API key,
shows rooms, members, sessions and nodes, logs members joining and leaving as they do, and
its kick ends the user's session (the user's demo page is signed out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_KEY, screenshot
from tests.browser.test_demo_chat import member, sign_in
from tests.support.nodes import PresencedNode


def test_dashboard_live_and_kick(
    start_node: Callable[..., PresencedNode], new_page: Callable[..., Any]
) -> None:
    node = start_node(demo="true", grace="30", api_keys=f"admin:{ADMIN_KEY}")
    board = new_page(f"{node.admin_url}/dashboard/?poll=300")

    # the key: a wrong one is refused, the right one opens the board (and is kept on reload)
    expect(board.get_by_test_id("login")).to_be_visible()
    board.fill("#login input[name=key]", "not-the-key")
    board.click("#login button[type=submit]")
    expect(board.get_by_test_id("login-error")).to_contain_text("not one of the server's")
    board.fill("#login input[name=key]", ADMIN_KEY)
    board.click("#login button[type=submit]")
    expect(board.get_by_test_id("live")).to_have_attribute("data-state", "live")
    board.reload()
    expect(board.get_by_test_id("live")).to_have_attribute("data-state", "live")
    expect(board.locator("#nodes tr[data-node='browser-0']")).to_contain_text("ok")

    # members join: the log says so, the room's count and members follow
    carol = new_page(f"http://127.0.0.1:{node.port}/")
    dave = new_page(f"http://127.0.0.1:{node.port}/")
    sign_in(carol, "carol", "ops")
    expect(board.locator("#log li", has_text="room ops occupied")).to_be_visible()
    sign_in(dave, "dave", "ops")
    expect(board.locator("#log li", has_text="dave joined ops")).to_be_visible()
    ops = board.locator("#rooms tr[data-room=ops]")
    expect(ops.get_by_test_id("room-count")).to_have_text("2")
    ops.click()
    expect(board.locator("#members tr[data-user=carol]")).to_contain_text("online")
    expect(board.locator("#members tr[data-user=dave]")).to_contain_text("1")

    # a user's sessions, and a publish that the members get
    board.fill("[data-testid=user-query]", "carol")
    board.press("[data-testid=user-query]", "Enter")
    expect(board.locator("[data-testid=sessions] tbody tr")).to_have_count(1)
    expect(board.locator("[data-testid=sessions] tbody tr")).to_contain_text("active")
    board.fill("[data-testid=publish-body]", "maintenance at 10:00")
    board.press("[data-testid=publish-body]", "Enter")
    expect(carol.locator("#messages li.message", has_text="maintenance at 10:00")).to_be_visible()
    board.set_viewport_size({"width": 1440, "height": 760})
    screenshot(board, "dashboard")

    # a leave shows live; a kick from the board ends carol's session on her page
    dave.click("#leave")
    expect(board.locator("#log li", has_text="dave left ops")).to_be_visible()
    expect(member(carol, "dave")).to_have_count(0)
    board.locator("#members tr[data-user=carol]").get_by_test_id("kick").click()
    expect(carol.get_by_test_id("notice")).to_contain_text("signed out: kicked")
    expect(carol.get_by_test_id("login")).to_be_visible()
    expect(board.locator("#log li", has_text="carol left ops")).to_be_visible()
    expect(board.locator("#log li", has_text="room ops vacated")).to_be_visible()
    expect(board.locator("#rooms tr[data-room=ops]")).to_have_count(0)
    expect(board.locator("[data-testid=user]")).to_contain_text("carol is offline, last seen")
    expect(board.get_by_test_id("sessions")).to_have_text("no live session")
