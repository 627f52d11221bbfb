"""The demo chat page (``presenced serve --demo``) in real Chromium: two users in browser
contexts of their own chat, see each other's presence, typing, receipts and unread counts;
one goes offline (network emulation) and comes back within grace, one reloads: nobody sees a
leave and no message is missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.support.nodes import PresencedNode

# A grace long enough for a reload or a short outage on a busy machine, and far longer than
# any wait below: a leave seen here would be a real one.
DEMO = {"demo": "true", "grace": "30"}


def sign_in(page: Any, user: str, rooms: str = "lobby, random") -> None:
    page.fill("#login input[name=user]", user)
    page.fill("#login input[name=rooms]", rooms)
    page.click("#login button[type=submit]")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "connected")


def member(page: Any, user: str) -> Any:
    return page.locator(f"#members li[data-user='{user}']")


def message(page: Any, body: str) -> Any:
    return page.locator("#messages li.message", has_text=body)


def send(page: Any, body: str) -> None:
    page.fill("[data-testid=compose]", body)
    page.press("[data-testid=compose]", "Enter")


def no_leave(page: Any, user: str) -> None:
    expect(page.locator("#messages li.system", has_text=f"{user} left")).to_have_count(0)


@pytest.mark.parametrize("store", ["memory", "valkey"])
def test_two_users_chat(
    store: str, start_node: Callable[..., PresencedNode], new_page: Callable[..., Any]
) -> None:
    node = start_node(store, **DEMO)
    alice = new_page(f"http://127.0.0.1:{node.port}/")
    bob = new_page(f"http://127.0.0.1:{node.port}/")
    sign_in(alice, "alice")
    sign_in(bob, "bob")

    # presence: each sees the other in the member list, online, with one device
    expect(member(alice, "bob")).to_have_attribute("data-status", "online")
    expect(member(bob, "alice")).to_contain_text("1 device")
    expect(alice.locator("#count")).to_have_text("(2)")

    # typing, then the message, then alice (looking at the room) has seen it
    bob.fill("[data-testid=compose]", "hello al")
    expect(alice.get_by_test_id("typing")).to_have_text("bob is typing…")
    send(bob, "hello alice")
    expect(message(alice, "hello alice")).to_be_visible()
    expect(alice.get_by_test_id("typing")).to_have_text("")
    expect(message(bob, "hello alice").get_by_test_id("receipt")).to_have_text("seen by alice")

    # edit and delete: the author's, and the other page follows
    send(alice, "hi bob, typo here")
    expect(message(bob, "typo here")).to_be_visible()
    message(alice, "typo here").get_by_role("button", name="edit").click()
    alice.fill("[data-testid=edit]", "hi bob")
    alice.press("[data-testid=edit]", "Enter")
    expect(message(bob, "hi bob")).to_contain_text("(edited)")
    expect(message(bob, "typo here")).to_have_count(0)
    send(alice, "oops, wrong room")
    expect(message(bob, "wrong room")).to_be_visible()
    message(alice, "wrong room").get_by_role("button", name="delete").click()
    expect(message(bob, "wrong room")).to_have_count(0)

    bob.fill("[data-testid=compose]", "one more thing")
    expect(alice.get_by_test_id("typing")).to_have_text("bob is typing…")
    if store == "memory":
        screenshot(alice, "demo-chat")

    # unread: a message in a room alice is not looking at counts until she opens it
    bob.locator("#rooms li[data-room=random] button").first.click()
    send(bob, "over here")
    random = alice.locator("#rooms li[data-room=random]")
    expect(random.get_by_test_id("unread")).to_have_text("1")
    random.locator("button").first.click()
    expect(message(alice, "over here")).to_be_visible()
    expect(random.get_by_test_id("unread")).to_have_count(0)
    expect(message(bob, "over here").get_by_test_id("receipt")).to_have_text("seen by alice")

    # a status change shows in the other's member list
    bob.select_option("[data-testid=status]", "busy")
    expect(member(alice, "bob")).to_have_attribute("data-status", "busy")


def test_offline_within_grace_then_back(
    start_node: Callable[..., PresencedNode], new_page: Callable[..., Any]
) -> None:
    node = start_node(**DEMO)
    alice = new_page(f"http://127.0.0.1:{node.port}/")
    bob = new_page(f"http://127.0.0.1:{node.port}/")
    sign_in(alice, "alice")
    sign_in(bob, "bob")
    expect(member(alice, "bob")).to_be_visible()
    send(bob, "before the tunnel")
    expect(message(alice, "before the tunnel")).to_be_visible()

    # bob's network goes: his page drops the connection, alice sees his device in grace
    bob.context.set_offline(True)
    expect(bob.get_by_test_id("connection")).to_have_attribute("data-state", "reconnecting")
    expect(member(alice, "bob")).to_have_attribute("data-dropped", "yes")
    expect(
        alice.locator("#messages li.system", has_text="bob's connection dropped")
    ).to_be_visible()
    screenshot(alice, "demo-dropped")
    send(alice, "are you there?")
    send(alice, "the train is late")
    expect(message(alice, "the train is late").get_by_test_id("receipt")).to_have_text("sent")

    # back within grace: the same session, the missed messages, and nobody saw a leave
    bob.context.set_offline(False)
    expect(bob.get_by_test_id("connection")).to_have_attribute("data-state", "connected")
    expect(message(bob, "are you there?")).to_be_visible()
    expect(message(bob, "the train is late")).to_be_visible()
    expect(member(alice, "bob")).to_have_attribute("data-dropped", "no")
    expect(alice.locator("#messages li.system", has_text="bob is back")).to_be_visible()
    expect(message(alice, "the train is late").get_by_test_id("receipt")).to_have_text(
        "seen by bob"
    )
    expect(bob.locator("#messages li.message")).to_have_count(3)  # each once
    no_leave(alice, "bob")
    expect(alice.locator("#messages li.system", has_text="bob joined")).to_have_count(1)


def test_reload_keeps_the_session(
    start_node: Callable[..., PresencedNode], new_page: Callable[..., Any]
) -> None:
    node = start_node(**DEMO)
    alice = new_page(f"http://127.0.0.1:{node.port}/")
    bob = new_page(f"http://127.0.0.1:{node.port}/")
    sign_in(alice, "alice")
    sign_in(bob, "bob")
    expect(member(alice, "bob")).to_be_visible()
    send(alice, "see you after the reload")
    expect(message(bob, "see you after the reload")).to_be_visible()
    session = bob.get_by_test_id("me").get_attribute("data-session")
    assert session

    bob.reload()
    expect(bob.get_by_test_id("connection")).to_have_attribute("data-state", "connected")
    expect(bob.get_by_test_id("me")).to_have_attribute("data-session", session)  # resumed
    expect(message(bob, "see you after the reload")).to_be_visible()  # from the history
    expect(member(bob, "alice")).to_be_visible()
    expect(alice.locator("#messages li.system", has_text="bob is back")).to_be_visible()
    expect(member(alice, "bob")).to_contain_text("1 device")
    send(bob, "back already")
    expect(message(alice, "back already")).to_be_visible()
    no_leave(alice, "bob")
