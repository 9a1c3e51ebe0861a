"""The Redis contract and its clients: mood messages (schema, publish, history, subscribe),
feature frames (codec, publisher, reader with leases), the bounded outbox, connections and the
embedded server."""
