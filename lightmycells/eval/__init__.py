"""Evaluation: challenge metrics, official metrics JSON, reports, expected-output comparison.

``python -m lightmycells.evaluate`` evaluates prediction folders against ground truth;
``python -m lightmycells.eval.compare`` is what ``test.sh`` runs inside the image.
"""
