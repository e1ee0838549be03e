"""Text randomization: the caption transform that mitigates deja vu memorization.

Each time a caption is loaded for training, every word is dropped independently with
probability ``rate`` (``mode="drop"``) or replaced by a placeholder word
(``mode="mask"``). At least one original word always survives, so no caption becomes
empty. Words are whitespace-separated tokens of the caption. The draws come from a
NumPy generator that the caller seeds, so the trainer draws fresh masks every epoch
and the same seed gives the same masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dejavu.errors import InputError

MODES = ("drop", "mask")

# "_" is a single token of open_clip's BPE tokenizer, so masking keeps the caption's
# token count (the tiny models' context is 32 tokens) and adds no new word piece.
MASK_WORD = "_"


def check_mask_settings(rate: float, mode: str) -> None:
    """Raise :class:`~dejavu.errors.InputError` unless ``0 <= rate < 1`` and ``mode``
    is ``"drop"`` or ``"mask"``."""
    if not isinstance(rate, int | float) or not 0.0 <= float(rate) < 1.0:
        raise InputError(
            f"text mask rate {rate!r} is outside [0, 1); give the probability of "
            "dropping each caption word, such as 0.3"
        )
    if mode not in MODES:
        raise InputError(
            f"text mask mode {mode!r} is invalid; use one of {', '.join(MODES)}"
        )


@dataclass(frozen=True)
class TextRandomizer:
    """Randomize captions by dropping or masking words.

    Parameters
    ----------
    rate : float
        Probability ρ in [0, 1) that each word is dropped or masked.
    mode : {"drop", "mask"}, default="drop"
        ``"drop"`` removes the chosen words; ``"mask"`` replaces each by ``mask_word``.
    mask_word : str, default="_"
        Placeholder used in ``"mask"`` mode.

    Examples
    --------
    >>> import numpy as np
    >>> randomize = TextRandomizer(rate=0.5)
    >>> randomize("a red bus on a street", np.random.default_rng(2))
    'bus a street'
    >>> masked = TextRandomizer(rate=0.5, mode="mask")
    >>> masked("a red bus on a street", np.random.default_rng(2))
    '_ _ bus _ a street'
    >>> TextRandomizer(rate=0.0)("a red bus", np.random.default_rng(0))
    'a red bus'
    """

    rate: float
    mode: str = "drop"
    mask_word: str = MASK_WORD

    def __post_init__(self) -> None:
        check_mask_settings(self.rate, self.mode)

    def __call__(self, caption: str, rng: np.random.Generator) -> str:
        """Return ``caption`` with words dropped or masked, drawing from ``rng``.

        With ``rate == 0`` the caption is returned unchanged and ``rng`` is not used.
        """
        if self.rate == 0.0:
            return caption
        words = caption.split()
        if not words:
            return caption
        removed = rng.random(len(words)) < self.rate
        if removed.all():
            # Keep one word, chosen uniformly, so the caption never becomes empty.
            removed[rng.integers(len(words))] = False
        if self.mode == "drop":
            kept = [word for word, gone in zip(words, removed, strict=True) if not gone]
        else:
            kept = [
                self.mask_word if gone else word
                for word, gone in zip(words, removed, strict=True)
            ]
        return " ".join(kept)

    def apply(self, captions: Sequence[str], rng: np.random.Generator) -> list[str]:
        """Randomize each caption of ``captions`` in order; see :meth:`__call__`."""
        return [self(caption, rng) for caption in captions]
