"""Serving: the model artifact, the quadrant labels, and the LiteRT step model with its exact
rolling window (no TensorFlow)."""
