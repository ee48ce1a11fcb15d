"""``python -m flows.cli``: the same command line as the ``leadscore`` script."""

from flows.cli import app

app(prog_name="leadscore")
