"""The service's settings, read once at start-up from ``LEADSCORE_*`` (and the git-ignored secrets file)."""

from pathlib import Path

from pydantic import Field, SecretStr

from store.settings import Settings


class ServiceSettings(Settings):
    """Limits and keys of the HTTP service, on top of where the store and the portfolio are."""

    api_max_body_bytes: int = 1_048_576  # a request body above this gets 413 before it is read whole
    api_max_batch: int = 1_000  # items per POST /v1/events or /v1/leads
    api_rate_per_second: float = 200.0  # sustained requests per second per API key…
    api_rate_burst: int = 400  # …and the burst a key may spend at once
    # The buckets' file, shared by the service's processes on this host (default: /dev/shm, per store).
    api_rate_file: Path | None = None
    # Websites allowed to call the score and content look-ups from a browser (a JSON list in the environment).
    api_cors_origins: list[str] = Field(default_factory=list)
    api_key_cache_seconds: float = 5.0  # a checked key is trusted this long: a revocation takes effect within it
    api_writer_batch: int = 5_000  # most intake items a process's writer commits in one transaction
    # While intake is busy, a commit waits this long for more requests to join it (0: never waits).
    api_writer_linger_ms: float = 2.0
    # Intake commits a process runs at once on PostgreSQL (SQLite: always one, its single writer); more
    # than one pays only where the commit's wait, not the CPU, is the limit (measured here: it was not).
    api_writer_lanes: int = 1
    # The previous unsubscribe secret during a rotation: links signed with it keep working until it is removed.
    unsubscribe_secret_previous: SecretStr | None = None
    # Email feedback webhooks (POST /v1/email-events/{provider}); a provider without its key is not served.
    webhook_secret: SecretStr | None = None  # generic: leadscore's own HMAC scheme
    mailgun_signing_key: SecretStr | None = None
    sendgrid_verification_key: SecretStr | None = None  # the base64 DER public key SendGrid shows

    def feedback_keys(self) -> dict[str, str]:
        """Provider → the key that verifies its webhooks, for the providers configured."""
        keys = {
            "generic": self.webhook_secret,
            "mailgun": self.mailgun_signing_key,
            "sendgrid": self.sendgrid_verification_key,
        }
        return {name: key.get_secret_value() for name, key in keys.items() if key is not None}

    def portfolio_file(self) -> Path:
        """``LEADSCORE_PORTFOLIO``, else ``./portfolio.yaml``: the service never guesses another one."""
        path = self.portfolio or Path("portfolio.yaml")
        if not Path(path).is_file():
            raise FileNotFoundError(f"portfolio file {path} not found: set LEADSCORE_PORTFOLIO")
        return Path(path)
