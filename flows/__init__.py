"""leadscore flows package: Prefect flows and tasks, deployments and the CLI."""

from flows.allocator import limit_malloc_arenas

limit_malloc_arenas()  # before any task runner thread exists (see flows/allocator.py)
