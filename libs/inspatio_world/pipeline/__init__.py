"""The generator pipeline (step 3) as library code: weights layout, model loading, block streaming."""
