"""The latency and memory predictor, and its evaluation.

- ``features``: per-model features (FLOPs, params, per-kernel-kind counts) from the zoo;
- ``models``: the regression models (kernel-sum and roofline, in log space);
- ``predictor``: ``LatencyPredictor`` (fit on measurements, predict with intervals);
- ``evaluate``: ``evaluate`` (leave-one-model-out cross-validation against a FLOPs-only
  baseline), its metrics and the words that report them.

The kernel-level predictor (issue 13), fitted on per-layer profiles:

- ``layers``: layer records (``backbench layers`` rows) validated, and each layer's shape
  features; ``PlannedLayer``, a layer a model will execute;
- ``cases``: the profiled cases, and which to trust (disturbed, provably inflated);
- ``kernels``: ``KernelPredictor`` (per-layer-type regressors summed, plus an overhead);
- ``exec_graph``: ``compiled_layers``, a model's executed layers from OpenVINO's compiled
  graph, without running it;
- ``kernel_evaluate``: its leave-one-model-out evaluation with today's model, the
  FLOPs-only baseline and the data's ceiling; ``evaluate_with_profiles`` (what
  ``predict --evaluate`` runs: kernel-level where profiles exist, else end-to-end).

Imports zoo, the data model and (``exec_graph``, lazily) backends; never measure,
analysis, report or cli.
"""
