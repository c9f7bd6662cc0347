"""The pipeline's stages as library functions over the object store: caption, depth, render, generate.

Each stage reads its inputs from the store, writes its outputs under a content-addressed key
(inputs + options + weight identity), and returns references; a stage whose outputs already exist
returns them without running (a cache hit). The gRPC services and the in-process runner both call
these functions; neither reimplements them.
"""
