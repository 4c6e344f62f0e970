"""Batch inference: the predictor actors, the event outputs and the progress lines."""
