"""The ``backbench`` command line.

- ``main``: the parser and ``main()``; command families are found through the
  ``backbench.commands`` entry points: core's own here, and the service and gui
  packages register theirs (agent, remote, export; gui), so core imports neither;
- ``console``: the consoles, the results table and the progress bar every family uses;
- ``run_options``: the options of a run, declared once (also read by the agent and GUI);
- ``measure``: ``models``, ``run``, ``results``, ``runs``, ``devices``, ``worker``;
- ``analysis``: ``analyze``, ``predict`` and ``report``.

Each command imports what it needs when it runs, so ``backbench models`` never pays for
torch and the agent never loads analysis code.
"""
