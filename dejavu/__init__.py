"""Audit CLIP-style vision-language models for deja vu memorization.

The deja vu test (Jayaraman, Guo and Chaudhuri, NeurIPS 2024) asks whether a model
trained on image-caption pairs can recover objects of a training image from its
caption alone, beyond what a reference model trained on other data recovers.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_run"]


def load_run(path):
    """Load an audit run folder; see :func:`dejavu.report.load_run`."""
    from dejavu.report import load_run as _load_run

    return _load_run(path)
