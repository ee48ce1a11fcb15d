"""Chat actions: a firing posted to Slack and Teams incoming webhooks (a local HTTP server stands in)."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flows.actions import post_to_chats
from stages.spec import Action
from tests.nurture.chat_firing import FIRING


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    received: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_firing_is_posted_in_each_platforms_documented_format(
    hooks: tuple[str, list[tuple[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = hooks
    monkeypatch.setenv("SLACK_SALES", f"{url}/slack")
    monkeypatch.setenv("TEAMS_SALES", f"{url}/teams")
    firings = [
        {**FIRING, "params": json.dumps(Action(chat={"platform": "slack", "url_env": "SLACK_SALES"}).params)},
        {**FIRING, "id": 8, "params": json.dumps(Action(chat={"platform": "teams", "url_env": "TEAMS_SALES"}).params)},
        {**FIRING, "id": 9, "params": json.dumps({"platform": "slack", "url_env": "NOT_SET"})},
    ]
    outcomes = post_to_chats(firings)
    assert [(o[0], o[1], o[3]) for o in outcomes] == [
        (9, "retry", "environment variable NOT_SET is not set"), (7, "done", "HTTP 200"), (8, "done", "HTTP 200"),
    ]  # fmt: skip
    slack = dict(received)["/slack"]
    assert slack["text"] == "Trigger hot lead: LD-5 up"
    assert slack["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Trigger hot lead: LD-5 up"}}
    assert slack["blocks"][1]["fields"][0] == {"type": "mrkdwn", "text": "*Lead*\nAda Lo (LD-5), A&amp;B &lt;Ltd&gt;"}
    assert slack["blocks"][1]["fields"][5]["text"] == "*Top reasons*\ndemo request (+30), pricing page (+20)"
    teams = dict(received)["/teams"]
    [attachment] = teams["attachments"]
    assert (teams["type"], attachment["contentType"]) == ("message", "application/vnd.microsoft.card.adaptive")
    card = attachment["content"]
    assert (card["type"], card["version"], card["body"][0]["text"]) == (
        "AdaptiveCard",
        "1.4",
        "Trigger hot lead: LD-5 up",
    )
    assert card["body"][1]["facts"][3] == {"title": "Score", "value": "72.5 (was 48.0)"}


def test_a_chat_action_names_an_environment_variable_not_a_url() -> None:
    with pytest.raises(ValueError, match="url_env"):
        Action(chat={"platform": "slack", "url_env": "https://hooks.slack.com/services/T/B/X"})
