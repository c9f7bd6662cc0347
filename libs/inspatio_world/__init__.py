"""InSpatio-World: camera-controlled video re-rendering as a library and a set of services."""

__version__ = "0.1.0"
