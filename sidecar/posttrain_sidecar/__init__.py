"""posttrain's training sidecar: speaks the controller's ZeroMQ/msgpack protocol and trains with TRL."""

__version__ = "0.1.0"
