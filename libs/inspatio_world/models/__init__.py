"""Model code: the causal DiT, its sampler and scheduler, VAEs, text encoder and weight loading."""
