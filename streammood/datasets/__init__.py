"""Labelled music data sets (4Q, DEAM) and the on-disk feature cache."""
