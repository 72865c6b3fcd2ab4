"""minibuild: a daemon-less container image builder."""

__version__ = "0.1.0"
