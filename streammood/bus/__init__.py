"""The Redis contract: mood messages, feature-frame codec, publisher/subscriber, embedded server."""
