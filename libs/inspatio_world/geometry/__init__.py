"""Camera geometry: trajectory files, DA3 pose post-processing and the point-cloud forward-warp renderer."""
