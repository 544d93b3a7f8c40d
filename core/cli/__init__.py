"""The ``backbench`` command line.

- ``main``: the parser and ``main()``; command families are found through the
  ``backbench.commands`` entry points (core's own here, ``agent``/``remote``/``export``
  from service, ``gui`` from gui), so core never imports service or gui;
- ``analysis``: ``analyze``, ``predict`` and ``report``.

Each command imports what it needs when it runs, so ``backbench models`` never pays for
torch and the agent never loads analysis code.
"""
