"""Batch inference over an archive: the resumable archive pass (``archive_pass``), the model
actors that label (``predictor``) and embed (``embedder``), the committed outputs
(``label_outputs``) and the progress lines."""
