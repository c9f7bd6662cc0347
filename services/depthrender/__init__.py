"""The depthrender service."""
