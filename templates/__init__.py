"""leadscore's Jinja2 templates (emails, the report, the backtest report), shipped as package data.

Code finds them through ``FOLDER`` rather than a path relative to the source tree, which exists only in a
checkout or an editable install.
"""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
