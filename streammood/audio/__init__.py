"""Audio in: sources (sound device, file), streaming resampling, and the 500 ms framer."""
