"""The mood model: labels, Keras architecture (training only), artifact, LiteRT runtime."""
