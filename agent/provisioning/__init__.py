"""Camera provisioning: the pure schedule and state machine, the wire format, the client."""
