"""Evaluation metrics for detections against ground truth.

One module per kind of result (e.g. :mod:`geodetect.metrics.boxes`).
"""


def precision_recall_f1(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """Precision, recall and F1 with the conventions every metric here shares.

    Precision is 0 without predictions when there is truth, NaN when there is
    neither; recall is NaN without truth; F1 is NaN without either, 0 when
    there are predictions but no truth.
    """
    import math

    precision = tp / n_pred if n_pred else (0.0 if n_true else float("nan"))
    recall = tp / n_true if n_true else float("nan")
    if n_true == 0 and n_pred == 0:
        f1 = float("nan")
    elif math.isnan(recall):
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall) if (precision + recall) > 0 else 0.0
    return precision, recall, f1
