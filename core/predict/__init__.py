"""The latency and memory predictor, and its evaluation.

- ``features``: per-model features (FLOPs, params, per-kernel-kind counts) from the zoo;
- ``models``: the regression models (kernel-sum and roofline, in log space);
- ``predictor``: ``LatencyPredictor`` (fit on measurements, predict with intervals);
- ``evaluate``: ``evaluate`` (leave-one-model-out cross-validation against a FLOPs-only
  baseline), its metrics and the words that report them.

Imports zoo and the data model; never measure, analysis, report or cli.
"""
