"""Training: fine-tune a classifier on EuroSAT with TorchGeo and Lightning, and evaluate it.

``config`` (settings, no torch), ``augment`` (radiometric jitter), ``data`` (datasets and the
datamodule), ``losses`` (the mosaic losses), ``task`` (the Lightning task), ``fit`` (train, test
and export) and ``evaluate`` (accuracy, F1, confusion). Nothing is imported here, so that
``geocam.training.config`` loads without Lightning.
"""
