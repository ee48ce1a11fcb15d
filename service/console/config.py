"""The console's settings, read once at start-up: the key that signs its session cookies, and how long they last."""

from pydantic import SecretStr

from store.settings import Settings

MIN_SESSION_SECRET = 32


class ConsoleSettings(Settings):
    """``LEADSCORE_SESSION_SECRET`` signs the console's cookies; without it the console is not served (there
    is no default key a forger could know)."""

    session_secret: SecretStr | None = None
    session_hours: float = 12.0  # a session expires this long after sign-in
    console_page_size: int = 50  # rows per page of the leads list
