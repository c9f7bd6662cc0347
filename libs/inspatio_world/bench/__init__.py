"""Benchmarks behind `inspatio bench` (CUDA, random weights, real shapes)."""
