"""Compression with a trust re-audit: quantise, export to ONNX, distil and prune a fine-tuned run.

``compress_run(RUN_DIR, method=..., output_dir=...)`` writes a child run folder whose model
every command loads (:class:`~trustfm.models.predictor.Predictor`), linked to its parent in
``run.json``; ``compare_runs(PARENT, CHILD)`` judges both models on the same examples and
writes the deltas, each with a paired bootstrap interval, to the child's
``results/compare.json``.
"""
