"""Open pixel and click redirect links for nurture email, when the portfolio turns tracking on.

Each link of the HTML part becomes ``{base_url}/t/c/{token}``, the token signing the message's
Message-ID and that exact URL: the service redirects only to URLs it signed, so it is never an open
redirect. A 1×1 pixel ``{base_url}/t/o/{token}`` signs the Message-ID alone. Unsubscribe links and
``mailto:`` are left as they are (RFC 8058 links must reach the unsubscribe endpoint directly).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from nurture.tokens import sign, verify

_HREF = re.compile(r'href="(https?://[^"]+)"')


def open_token(secret: str, message_id: str) -> str:
    return sign(secret, "open", message_id)


def click_token(secret: str, message_id: str, url: str) -> str:
    return sign(secret, "click", f"{message_id}\n{url}")


def read_open(token: str, secrets: Sequence[str]) -> str | None:
    """The Message-ID of a genuine open token."""
    return verify(token, secrets, "open")


def read_click(token: str, secrets: Sequence[str]) -> tuple[str, str] | None:
    """``(message_id, url)`` of a genuine click token."""
    payload = verify(token, secrets, "click")
    if payload is None or "\n" not in payload:
        return None
    message_id, url = payload.split("\n", 1)
    return message_id, url


def track_html(body: str, *, message_id: str, base_url: str, secret: str, keep: Sequence[str] = ()) -> str:
    """``body`` with its http(s) links wrapped in signed click links (except ``keep``) and an open pixel."""
    base = base_url.rstrip("/")

    def wrap(match: re.Match[str]) -> str:
        url = html.unescape(match.group(1))
        if url in keep:
            return match.group(0)
        return f'href="{base}/t/c/{click_token(secret, message_id, url)}"'

    tracked = _HREF.sub(wrap, body)
    pixel = f'<img src="{base}/t/o/{open_token(secret, message_id)}" width="1" height="1" alt="" style="display:block">'
    closing = tracked.rfind("</body>")
    return tracked[:closing] + pixel + tracked[closing:] if closing >= 0 else tracked + pixel
