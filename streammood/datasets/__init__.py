"""Labelled music data sets (4Q, DEAM) and the on-disk feature cache.

- :mod:`~streammood.datasets.cache`: :class:`ClipFeatures`, :class:`FeatureCache`
  (``.cache/features``, keyed by audio content + feature version + embedder model) and
  :func:`extract_clips` (parallel, progress bar, cache hits skip work, bad clips skipped by name).
- :mod:`~streammood.datasets.windows`: :class:`Window` (60 steps) and :func:`stack_windows`.
- :mod:`~streammood.datasets.fourq`: :func:`load_fourq`.
- :mod:`~streammood.datasets.deam`: :func:`load_deam` (static / dynamic, swap check).
- :mod:`~streammood.datasets.splits`: :func:`split_by_group`, :func:`member_folds`.
"""
