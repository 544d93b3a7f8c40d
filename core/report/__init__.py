"""The self-contained HTML report and its figures.

- ``html``: ``write_report``, the folder with index.html, figures, tables and JSON;
- ``figures``: the study's matplotlib figures, drawn from what ``analyze()`` returned.

Imports analysis, predict and the data model.
"""
