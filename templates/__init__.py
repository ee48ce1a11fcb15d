"""leadscore's Jinja2 templates (emails, the report, the backtest report), shipped as package data.

Code finds this folder through ``nurture.mail.PROJECT_TEMPLATES`` (a path beside the installed packages), never by
importing ``templates``: a user project's own ``templates/`` folder would shadow that import.
"""
