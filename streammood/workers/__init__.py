"""Long-running jobs that join the stages: capture, infer, listen, analyze."""
