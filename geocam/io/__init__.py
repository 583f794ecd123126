"""Input and output: scenes in, rasters and vectors out (the only modules that open files)."""
