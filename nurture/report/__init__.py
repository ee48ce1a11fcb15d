"""The daily report's content, read from the store and drawn with the chart kit: ``build`` runs each section's
query and its pure renderer (``sections``, ``experiments``), ``page`` wraps them in the Jinja templates.

It lives in the top domain room because it reads what every room below produced (scores, stages, nurture
results), so both the report step of ``flows/`` and the console's live report page (``service/``) use it.
"""
