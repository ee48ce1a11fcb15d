"""DKIM: a message received by a real SMTP server verifies with dkimpy's own verifier."""

from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine

from nurture import delivery, transports
from nurture.signing import DkimSigner
from store.outbox import SqlOutbox
from tests.nurture.conftest import NOW, Recorder, add_leads
from tests.nurture.test_delivery import nurture_message, smtp_settings


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_a_signed_message_verifies_after_an_smtp_round_trip(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int], key_pem: bytes
) -> None:
    handler, port = smtp_server
    (tmp_path / "dkim.pem").write_bytes(key_pem)
    signer = DkimSigner.from_file(tmp_path / "dkim.pem", selector="ls2026", domain="acme.example")
    [key] = add_leads(engine, {"lead_id": "LD-1", "email": "ada@client.example"})
    settings = smtp_settings(tmp_path, port)
    options = delivery.Options.from_settings(settings, signer=signer, clock=lambda: NOW)
    message = nurture_message(key, "ada@client.example", "enrolment:1:0")
    [result] = delivery.deliver(SqlOutbox(engine), transports.SmtpTransport(settings), [message], options, now=NOW)
    assert result.status == "sent"
    [(_, _, raw)] = handler.received
    published = signer.public_record().encode()
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return published

    assert dkim.verify(raw, dnsfunc=dns) is True
    assert asked == [b"ls2026._domainkey.acme.example."]
    signature = dkim.DKIM(raw)
    signature.verify(dnsfunc=dns)
    assert signature.include_headers == (
        b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe", b"list-unsubscribe-post",
        b"mime-version", b"content-type",
    )  # fmt: skip
    assert (tmp_path / "outbox" / "2026-11-23" / f"{message.message_id}.eml").read_bytes() == raw
    for header, forged in (
        (b"Subject: ", b"Subject: Free money "),
        (b"List-Unsubscribe: <", b"List-Unsubscribe: <https://evil.example/>, <"),
    ):
        assert dkim.verify(raw.replace(header, forged, 1), dnsfunc=dns) is False


def test_a_signer_refuses_a_key_that_is_not_rsa(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ValueError, match="must be an RSA private key"):
        DkimSigner(pem, selector="s", domain="acme.example")
