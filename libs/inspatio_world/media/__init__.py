"""Video decode/encode (PyAV) and frame value conversions."""
