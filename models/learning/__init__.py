"""Learning scoring models from historical conversions, and judging models against history.

Pure functions over Polars frames and NumPy arrays (no Prefect, no store): ``history`` reads the
training files, ``features`` turns attributes and events into columns, ``binning`` and ``scorecard``
learn an ordinary points model, ``probability`` a calibrated gradient-boosting model, ``guards``
refuse what would make a silently bad model, ``metrics`` and ``backtest`` judge models on the same
cross-validation folds, and ``learn`` ties them together with a version.
"""
