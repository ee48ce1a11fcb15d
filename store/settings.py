"""Runtime settings from ``LEADSCORE_*`` environment variables; the defaults are the embedded setup."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRETS_FILE = ".leadscore-secrets.env"


class Settings(BaseSettings):
    """Where the store, the outbox and the mail server are. Secrets never come from the portfolio."""

    # Secrets `leadscore init` generated (git-ignored); the environment wins over the file.
    model_config = SettingsConfigDict(env_prefix="LEADSCORE_", env_file=SECRETS_FILE, extra="ignore")

    database_url: str = "sqlite:///./leadscore.db"
    outbox_dir: Path = Path("./outbox")
    portfolio: Path | None = None
    timezone: str = "UTC"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False  # implicit TLS (port 465) instead of STARTTLS
    smtp_timeout: float = 30.0
    smtp_attempts: int = 3  # tries per message on temporary (4xx) failures
    smtp_backoff_seconds: float = 2.0  # wait before the first retry; doubles on each further one
    mail_from: str = "leadscore@localhost"
    # Signs the unsubscribe links (nurture.tokens); required to send over SMTP and to run the service.
    unsubscribe_secret: SecretStr | None = None
    # Keys the tombstones of erased people (store.tombstones); never rotate it. Without it, the unsubscribe secret.
    erasure_secret: SecretStr | None = None
    # DKIM signing of every message sent (nurture.signing): an RSA private key (PEM), the selector
    # its public key is published under (<selector>._domainkey.<domain>) and the signing domain.
    dkim_key_file: Path | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    workers: int = 2
    # Local folder of the event cache of PostgreSQL stores (store/event_cache.py); None: a per-user
    # folder in the temporary directory. SQLite stores keep theirs next to the database file.
    cache_dir: Path | None = None
    # Webhooks: wall-clock seconds per try (connect + the whole answer), and for a run's whole webhook step.
    webhook_deadline: float = 5.0
    webhook_budget: float = 30.0
    # Seconds a writing run waits for another run of the same portfolio on the store (then exits, saying who).
    run_lock_wait: float = 0.0
    # Where scoring tasks run (flows/runners.py): a thread pool, local processes, or a Dask cluster
    # (an existing one at ``dask_address``, else a local one of ``workers`` processes).
    task_runner: Literal["threads", "processes", "dask"] = "threads"
    dask_address: str | None = None

    def erasure_key(self) -> SecretStr | None:
        """The secret that keys erasure tombstones: its own setting, else the unsubscribe secret."""
        return self.erasure_secret or self.unsubscribe_secret


@lru_cache
def get_settings() -> Settings:
    return Settings()
