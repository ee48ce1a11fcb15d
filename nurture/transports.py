"""Where delivered messages go: the ``.eml`` outbox alone, or an SMTP server as well.

SMTP: one connection per batch (re-opened if the server drops it), STARTTLS or implicit TLS and
login as configured. ``Refused`` carries the server's answer (a 4xx is temporary; a 5xx to the
recipient or content is permanent); ``Unknown`` means the connection broke after the content was
handed over, so the server may have accepted it (``nurture.delivery`` never sends it again).
"""

from __future__ import annotations

import smtplib
import ssl
from typing import Protocol

from store.settings import Settings


class Refused(Exception):
    """The server answered ``code``; ``permanent_for_recipient`` when it is about the recipient or content."""

    def __init__(self, code: int, reply: bytes | str, stage: str):
        self.code = code
        self.stage = stage
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        super().__init__(f"{code} {text} (at {stage})")

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


class Unknown(Exception):
    """The connection broke after the content was handed over: the server may have accepted it."""


class Transport(Protocol):
    """Where messages go. ``remote``: a server answers each message, so each outcome is recorded
    as it comes (the file outbox has no answer to wait for)."""

    remote: bool

    def send(self, sender: str, to: str, data: bytes) -> None: ...
    def close(self) -> None: ...


class FilesOnly:
    """The embedded default: the ``.eml`` file is the delivery."""

    remote = False

    def send(self, sender: str, to: str, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None


class SmtpTransport:
    """One SMTP session for the whole batch, opened lazily and re-opened after a disconnect."""

    remote = True

    def __init__(self, settings: Settings):
        self.settings = settings
        self.client: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        host = s.smtp_host or "localhost"
        try:
            if s.smtp_ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    host, s.smtp_port, timeout=s.smtp_timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(host, s.smtp_port, timeout=s.smtp_timeout)
                if s.smtp_starttls:
                    client.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                client.login(s.smtp_username, password)
        except smtplib.SMTPResponseException as exc:
            raise Refused(exc.smtp_code, exc.smtp_error, "connect") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise Refused(421, str(exc), "connect") from exc  # not reached the server: safe to retry
        return client

    def send(self, sender: str, to: str, data: bytes) -> None:
        if self.client is None:
            self.client = self._open()
        client = self.client
        try:
            client.ehlo_or_helo_if_needed()
            code, reply = client.mail(sender)
            if code != 250:
                self._reset()
                raise Refused(code, reply, "sender")
            code, reply = client.rcpt(to)
            if code not in (250, 251):
                self._reset()
                raise Refused(code, reply, "recipient")
        except smtplib.SMTPServerDisconnected as exc:  # before the content: nothing was handed over
            self.client = None
            raise Refused(421, str(exc), "connect") from exc
        except smtplib.SMTPHeloError as exc:
            raise Refused(exc.smtp_code, exc.smtp_error, "connect") from exc
        try:
            code, reply = client.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: nothing was handed over
            self._reset()
            raise Refused(exc.smtp_code, exc.smtp_error, "data") from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.client = None
            raise Unknown(str(exc)) from exc
        if code != 250:
            raise Refused(code, reply, "data")

    def _reset(self) -> None:
        try:
            if self.client is not None:
                self.client.rset()
        except smtplib.SMTPException:
            self.client = None

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except smtplib.SMTPException:
                self.client.close()
            self.client = None


def transport_for(settings: Settings) -> Transport:
    """SMTP when a host is configured, else the file outbox alone."""
    return SmtpTransport(settings) if settings.smtp_host else FilesOnly()
