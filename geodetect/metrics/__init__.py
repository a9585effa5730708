"""Evaluation metrics for detections against ground truth.

One module per kind of result (e.g. :mod:`geodetect.metrics.boxes`).
"""
