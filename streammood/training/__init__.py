"""Offline training and evaluation of mood models."""
