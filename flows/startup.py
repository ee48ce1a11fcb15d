"""What a process that runs flows sets up from its settings, once it starts running one (never on import).

Settings are read here, at the edge (a flow's entry, the CLI), and passed on: domain and store code
never read the environment.
"""

from pathlib import Path

from flows.allocator import limit_malloc_arenas
from store.event_cache import use_cache_root
from store.reader import limit_read_processes
from store.settings import Settings, get_settings


def prepare_process(settings: Settings) -> None:
    """Cap glibc's malloc arenas before the task runner's threads exist (``flows/allocator.py``) and size
    the SQLite reader processes and place the event cache of PostgreSQL stores; all are process-wide,
    and repeating them changes nothing."""
    limit_malloc_arenas()
    limit_read_processes(settings.workers)
    use_cache_root(settings.cache_dir)


def enter_flow(database_url: str | None = None, outbox_dir: str | Path | None = None) -> Settings:
    """The settings of a flow run: the environment's, under the flow's own parameters; the process prepared."""
    given: dict[str, object] = {}
    if database_url:
        given["database_url"] = database_url
    if outbox_dir:
        given["outbox_dir"] = Path(outbox_dir)
    settings = get_settings().model_copy(update=given)
    prepare_process(settings)
    return settings
