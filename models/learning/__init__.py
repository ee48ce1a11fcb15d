"""Learning scoring models from historical conversions, and judging models against history.

Pure functions over Polars frames and NumPy arrays (no Prefect, no store): ``history`` reads the
training files, ``features`` turns attributes and events into columns, ``binning`` and ``scorecard``
learn an ordinary points model, ``probability`` a calibrated model (logistic regression, gradient
boosting or both, chosen by inner CV), ``guards`` refuse what would make a silently bad model (leaks
among them), ``metrics``, ``baseline`` and ``backtest`` judge models on the same cross-validation
folds, ``review`` judges them on live outcomes, and ``learn`` ties them together with a version.
"""
