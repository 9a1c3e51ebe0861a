"""streammood: real-time music mood tagging on Russell's valence-arousal circumplex."""

__version__ = "0.1.0"
