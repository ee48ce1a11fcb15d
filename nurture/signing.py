"""DKIM signatures (RFC 6376) over the headers RFC 8058 requires signed, with an RSA key from a file.

The canonicalisation, header selection and folding are dkimpy's own (the verifier the tests check
signatures with); only the RSA operation is OpenSSL's (``cryptography``): dkimpy's pure-Python RSA
costs ≈ 9 ms per message here, OpenSSL's ≈ 0.3 ms, which keeps signing within the outbox's 2,000
emails/s. ``c=relaxed/relaxed``: receivers' re-folding of headers does not break the signature.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim import fold, hash_headers, rfc822_parse
from dkim.canonicalization import CanonicalizationPolicy

from store.settings import Settings

# From, Subject, Date, List-Unsubscribe and List-Unsubscribe-Post must be signed (RFC 8058 §3.1);
# the others tie the signature to this recipient, message and MIME structure.
SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe", b"list-unsubscribe-post",
    b"mime-version", b"content-type",
)  # fmt: skip
_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


class DkimSigner:
    """Signs messages as ``domain`` with ``selector``; the public key is published at
    ``<selector>._domainkey.<domain>`` (``public_record`` gives the TXT value)."""

    def __init__(self, key_pem: bytes, *, selector: str, domain: str, clock: Callable[[], float] = time.time):
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 1024:
            raise ValueError("the DKIM key must be an RSA private key of at least 1024 bits (2048 advised)")
        self.key = key
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self.clock = clock

    @classmethod
    def from_file(cls, path: Path | str, *, selector: str, domain: str) -> DkimSigner:
        return cls(Path(path).read_bytes(), selector=selector, domain=domain)

    def public_record(self) -> str:
        """The DNS TXT record value that lets receivers verify the signatures."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    def sign(self, message: bytes) -> bytes:
        """``message`` with a ``DKIM-Signature`` header in front."""
        headers, body = rfc822_parse(message)
        present = {name.lower() for name, _ in headers}
        include = [name for name in SIGNED_HEADERS if name in present]
        if b"from" not in include:
            raise ValueError("a message without From cannot be DKIM-signed")
        body_hash = base64.b64encode(hashlib.sha256(_POLICY.canonicalize_body(body)).digest())
        fields = [
            (b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", self.domain),
            (b"s", self.selector), (b"t", str(int(self.clock())).encode()), (b"h", b" : ".join(include)),
            (b"bh", body_hash), (b"b", b""),
        ]  # fmt: skip
        value = fold(b"; ".join(b"=".join(field) for field in fields), namelen=len(b"DKIM-Signature"))
        digest = hashlib.sha256()
        canonical = _POLICY.canonicalize_headers(headers)
        hash_headers(digest, _POLICY, canonical, include, (b"DKIM-Signature", b" " + value), {})
        signature = base64.b64encode(self.key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256())))
        folded = b"\r\n ".join(signature[start : start + 72] for start in range(0, len(signature), 72))
        return b"DKIM-Signature: " + value + folded + b"\r\n" + message


def signer_for(settings: Settings) -> DkimSigner | None:
    """The DKIM signer when a key file is configured (with its selector and domain), else none."""
    if settings.dkim_key_file is None:
        return None
    if not (settings.dkim_selector and settings.dkim_domain):
        raise ValueError("LEADSCORE_DKIM_KEY_FILE needs LEADSCORE_DKIM_SELECTOR and LEADSCORE_DKIM_DOMAIN")
    return DkimSigner.from_file(settings.dkim_key_file, selector=settings.dkim_selector, domain=settings.dkim_domain)
