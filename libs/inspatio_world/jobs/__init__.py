"""Jobs: one video + one camera path through caption, depth, render and generation, with its state
kept as a manifest object in the store (so any coordinator can resume it)."""
