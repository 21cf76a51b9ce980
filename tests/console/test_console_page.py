"""The console page in headless Chromium against a real server: live updates, buttons, errors.

The browser logs in as a user would, with HTTP Basic credentials (given in the URL here, where
a person would type them into the browser's prompt); the page's own requests then carry them.
Each test opens the console filtered on its own PHLO, since the server is shared.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from e2ekit import Api, CallbackReceiver, Phlo, number
from livekit import ARTIFACTS, AUTH_ID, AUTH_TOKEN
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

T = TypeVar("T")
SCREENSHOTS = ARTIFACTS / "console"


class Page:
    def __init__(self, browser: WebDriver, phlo: Phlo) -> None:
        self.browser = browser
        self.phlo = phlo
        port = phlo.api.server.port
        browser.get(f"http://{AUTH_ID}:{AUTH_TOKEN}@127.0.0.1:{port}/console?phlo_id={phlo.phlo_id}")
        self.wait(
            lambda: self.text("#conn") == "live" and self.find(f'section.node[data-node-id="{phlo.node_id}"]')
        )

    def wait(self, condition: Callable[[], T], timeout: float = 10, what: str = "") -> T:
        def check(_: WebDriver) -> T | bool:
            try:
                return condition()
            except (NoSuchElementException, StaleElementReferenceException):
                return False  # the page redrew that part meanwhile

        result: T = WebDriverWait(self.browser, timeout, poll_frequency=0.05).until(check, what)
        return result

    def find(self, css: str) -> WebElement:
        return self.browser.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.browser.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        """The element's visible text, whitespace collapsed (layout may break it into lines)."""
        return " ".join(str(self.find(css).text).split())

    def row(self, address: str) -> str:
        return f'table.members tr[data-member="{address}"]'

    def svg_member(self, address: str) -> str:
        return f'svg.audio g.member[data-member="{address}"]'

    def status(self, address: str) -> str | None:
        return self.find(self.row(address)).get_attribute("data-status")

    def press(self, address: str, action: str) -> None:
        self.wait(lambda: self.find(f'{self.row(address)} button[data-action="{action}"]').click() or True)

    def feedback(self) -> tuple[str | None, str]:
        element = self.find("article.conference .feedback")
        return element.get_attribute("data-kind"), str(element.text)

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.browser.save_screenshot(str(SCREENSHOTS / name))

    def script_errors(self) -> list[dict[str, Any]]:
        """Errors of the page's JavaScript (refused requests are logged too, as network errors)."""
        logs = self.browser.get_log("browser")
        return [e for e in logs if e["level"] == "SEVERE" and e["source"] != "network"]


def test_a_conference_appears_and_hold_changes_the_audio_picture(api: Api, browser: WebDriver) -> None:
    phlo = api.create_phlo()
    page = Page(browser, phlo)
    assert "No live conferences" in page.text(f'section.node[data-node-id="{phlo.node_id}"]')

    agent, customer = number(), number()
    phlo.connect(agent, customer)
    page.wait(lambda: page.status(agent) == "connected" and page.status(customer) == "connected")
    page.wait(lambda: page.find(page.svg_member(customer)).get_attribute("data-status") == "connected")
    line = page.find("svg.audio line.hears")
    assert {line.get_attribute("data-from"), line.get_attribute("data-to")} == {agent, customer}
    assert line.get_attribute("data-both") == "true"  # they hear each other
    assert page.text(f"{page.row(agent)} td.hears") == customer
    assert re.fullmatch(r"\d\d:\d\d", page.text(f"{page.row(agent)} td.dur"))
    assert page.find("article.conference").get_attribute("data-status") == "live"

    page.press(customer, "hold")
    page.wait(lambda: page.status(customer) == "on_hold", what="the row to show on_hold")
    page.wait(lambda: page.find(page.svg_member(customer)).get_attribute("data-status") == "on_hold")
    note = page.find(f"{page.svg_member(customer)} g.music")
    assert note.get_attribute("data-music") == "customer_hold"
    assert page.text(f"{page.row(customer)} td.hears") == "♪ customer hold music"
    assert page.all("svg.audio line.hears") == []  # nobody hears anybody now
    page.wait(lambda: page.feedback() == ("ok", f"Hold {customer}: done"))  # events may beat the answer
    assert page.text('ol.timeline li[data-event="member_held"]').endswith(f"held {customer} (customer)")
    assert phlo.member(customer)["status"] == "on_hold"  # the page used the API

    # Mute: the row says so and the agent is heard by nobody (the held customer hears music anyway).
    page.press(agent, "mute")
    page.wait(lambda: page.find(page.row(agent)).get_attribute("data-mute") == "true", what="the mute flag")
    assert page.text(f"{page.row(agent)} .badge.muted-flag") == "muted"
    page.wait(
        lambda: page.text('ol.timeline li[data-event="member_muted"]').endswith(f"muted {agent} (agent)")
    )
    assert phlo.member(agent)["mute"] is True
    page.press(agent, "unmute")
    page.wait(lambda: page.find(page.row(agent)).get_attribute("data-mute") == "false", what="unmuted")
    assert page.all(f"{page.row(agent)} .badge.muted-flag") == []

    page.press(agent, "unhold")  # the agent is not on hold: the server refuses, the page says why
    page.wait(lambda: page.feedback()[0] == "error", what="the refusal")
    assert page.feedback()[1] == (
        f"Unhold {agent} refused (400): member {agent} is not on hold (status: connected)"
    )
    assert phlo.member(agent)["status"] == "connected"
    page.screenshot("console-refused-action.png")

    # The form: a warm transfer opens a private room with the agent and the target.
    target = number()
    form = page.find("article.conference form.mpc-form")
    Select(form.find_element(By.NAME, "action")).select_by_value("warm_transfer")
    form.find_element(By.NAME, "to").send_keys(target)
    Select(form.find_element(By.NAME, "trigger_source")).select_by_value(agent)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    private = 'svg.audio g.room.private[data-room^="consult"]'
    page.wait(lambda: page.find(private), what="the private room")
    page.wait(lambda: page.status(target) == "connected")
    for address in (agent, target):
        assert page.find(page.svg_member(address)).get_attribute("data-room").startswith("consult")
    assert page.find(page.svg_member(customer)).get_attribute("data-room") == "main"
    assert page.find('ol.timeline li[data-event="transfer_started"]')
    page.screenshot("console-hold-and-warm-transfer.png")
    assert page.script_errors() == []


def test_a_refused_call_shows_the_servers_error(api: Api, browser: WebDriver) -> None:
    phlo = api.create_phlo(max_participants=2)
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    page = Page(browser, phlo)
    page.wait(lambda: page.status(customer) == "connected")
    form = page.find("article.conference form.mpc-form")
    form.find_element(By.NAME, "to").send_keys(number())
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    page.wait(lambda: page.feedback()[0] == "error")
    assert "refused (400): " in page.feedback()[1]
    assert "max participants" in page.feedback()[1].lower()


def test_members_leave_and_the_conference_ends_on_the_page(api: Api, browser: WebDriver) -> None:
    phlo = api.create_phlo()
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    page = Page(browser, phlo)
    page.wait(lambda: page.status(agent) == "connected")

    page.press(agent, "hangup")
    page.wait(lambda: page.status(agent) == "left")
    assert page.text(f"{page.row(agent)} td:nth-child(3)") == "left · hangup"
    assert page.all(f"{page.row(agent)} button") == []  # no actions for whoever has left
    assert page.all(page.svg_member(agent)) == []
    assert page.text('ol.timeline li[data-event="member_left"]').endswith(f"left {agent} (agent) hangup")

    api.hang_up_phone(customer)
    page.wait(lambda: page.find("article.conference").get_attribute("data-status") == "ended")
    assert page.text('ol.timeline li[data-event="conference_ended"]').endswith("conference ended empty")
    assert page.find("article.conference form.mpc-form").is_displayed() is False
    page.find("article.conference button.dismiss").click()
    page.wait(lambda: not page.all("article.conference"))


def test_callback_deliveries_show_their_status(api: Api, browser: WebDriver) -> None:
    with CallbackReceiver(respond=lambda index: 200 if index else 503) as receiver:
        phlo = api.create_phlo(callback_url=receiver.url())
        page = Page(browser, phlo)
        phlo.connect(number(), number())
        page.wait(lambda: len(page.all('table.deliveries tr[data-status="delivered"]')) >= 7, timeout=15)
        first = page.find("table.deliveries tr[data-delivery]:first-child")
        assert first.text.startswith("#1 conference started delivered 2")  # the first try got a 503


@pytest.fixture(autouse=True)
def _fresh_page(browser: WebDriver) -> None:
    browser.get("about:blank")
    browser.get_log("browser")  # forget the previous test's console messages


def test_the_recording_buttons_start_pause_and_stop_the_conference_recording(
    api: Api, browser: WebDriver
) -> None:
    phlo = api.create_phlo()
    page = Page(browser, phlo)
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    bar = "article.conference div.record-bar"
    page.wait(lambda: page.find(bar).get_attribute("data-recording") == "none", what="not recording")
    for action, state in (("start", "recording"), ("pause", "paused"), ("resume", "recording")):
        page.wait(lambda action=action: page.find(f'{bar} button[data-record="{action}"]').click() or True)
        page.wait(lambda state=state: page.find(bar).get_attribute("data-recording") == state, what=state)
    assert phlo.conference()["recording"]["state"] == "recording"  # the page used the API
    page.wait(lambda: page.find(f'{bar} button[data-record="stop"]').click() or True)
    page.wait(lambda: page.find(bar).get_attribute("data-recording") == "none", what="stopped")
    page.wait(lambda: page.find('ol.timeline li[data-event="MPCRecordingCompleted"]'), what="Completed")
    assert page.text('ol.timeline li[data-event="MPCRecordingPaused"] span.subject') == "conference"
    assert page.script_errors() == []
