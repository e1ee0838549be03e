"""Captions for synthetic scenes that name some, never all, of the objects.

A caption mentions between one object class and all but one of the classes present
(one class only when the image contains a single object). Larger objects are more
likely to be mentioned, as a person describing a photo would. Spatial words ("to the
left of", "in front of") are used only when the boxes make them true.
"""

from __future__ import annotations

import numpy as np

from dejavu.data._scene_render import Placement
from dejavu.data._scene_vocab import CLASSES, SINGULAR_PHRASES, SceneType

_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
).split()

_ONE = [
    "{a}",
    "a photo of {a}",
    "{a} {place}",
    "a picture of {a} {place}",
    "there {is} {a} {place}",
    "{a_scene} scene with {a}",
    "an image showing {a}",
]
_TWO = [
    "{a} and {b}",
    "{a} next to {b}",
    "{a} near {b}",
    "{a} with {b} {place}",
    "a photo of {a} and {b}",
    "{a} and {b} {place}",
    "{a_scene} scene with {a} and {b}",
    "there {is} {a} and {b} {place}",
]
_MANY = [
    "{list}",
    "a photo of {list}",
    "{list} {place}",
    "{a_scene} scene with {list}",
    "{a} next to {rest}",
    "there {is} {list} {place}",
    "a picture showing {list}",
]


def caption_scene(
    placed: list[Placement],
    scene: SceneType,
    mention_fraction: float,
    rng: np.random.Generator,
) -> tuple[str, list[str]]:
    """Write a caption for a scene and return it with the labels it names.

    Parameters
    ----------
    placed : list of Placement
        The objects in drawing order.
    scene : SceneType
        The scene type, used by templates that name the place.
    mention_fraction : float
        Expected fraction of the distinct object classes that the caption names,
        before clipping to at least one and at most all but one.
    rng : numpy.random.Generator
        Source of every random choice.

    Returns
    -------
    caption : str
    mentioned : list of str
        Distinct labels named by the caption, in the order they appear in it.
    """
    # Distinct classes in order of first appearance, with counts and total areas.
    counts: dict[int, int] = {}
    areas: dict[int, float] = {}
    first: dict[int, Placement] = {}
    for item in placed:
        x1, y1, x2, y2 = item.box
        counts[item.class_id] = counts.get(item.class_id, 0) + 1
        areas[item.class_id] = areas.get(item.class_id, 0.0) + (x2 - x1) * (y2 - y1)
        first.setdefault(item.class_id, item)
    classes = list(counts)
    if len(classes) == 1:
        n_mention = 1
    else:
        n_mention = int(np.clip(rng.binomial(len(classes), mention_fraction), 1, None))
        n_mention = min(n_mention, len(classes) - 1)
    weights = np.asarray([areas[c] for c in classes])
    chosen = rng.choice(
        len(classes), n_mention, replace=False, p=weights / weights.sum()
    )
    mentioned = [classes[i] for i in chosen]

    phrases = [_phrase(c, counts[c], rng) for c in mentioned]
    fields = {
        "place": scene.places[int(rng.integers(len(scene.places)))],
        "a_scene": ("an " if scene.name[0] in "aeiou" else "a ") + scene.name,
        # "there is a dog and two cats": the verb agrees with the first phrase.
        "is": "are" if counts[mentioned[0]] > 1 else "is",
        "a": phrases[0],
    }
    if n_mention == 1:
        template = _ONE[int(rng.integers(len(_ONE)))]
    elif n_mention == 2:
        fields["b"] = phrases[1]
        relation = _relation(first[mentioned[0]], first[mentioned[1]], rng)
        templates = _TWO + ([f"{{a}} {relation} {{b}}"] * 3 if relation else [])
        template = templates[int(rng.integers(len(templates)))]
    else:
        fields["list"] = _join(phrases)
        fields["rest"] = _join(phrases[1:])
        template = _MANY[int(rng.integers(len(_MANY)))]
    caption = template.format(**fields)
    return caption, [CLASSES[c].label for c in mentioned]


def _phrase(class_id: int, count: int, rng: np.random.Generator) -> str:
    cls = CLASSES[class_id]
    if count == 1:
        if cls.label in SINGULAR_PHRASES:
            return SINGULAR_PHRASES[cls.label]
        article = "an" if cls.label[0] in "aeiou" else "a"
        return f"{article} {cls.label}"
    roll = rng.random()
    if roll < 0.6 and count < len(_NUMBERS):
        return f"{_NUMBERS[count]} {cls.plural}"
    if roll < 0.8:
        return f"{'several' if count > 2 else 'some'} {cls.plural}"
    return cls.plural


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _relation(a: Placement, b: Placement, rng: np.random.Generator) -> str | None:
    """Return a spatial relation of ``a`` to ``b`` that the boxes make true, if any."""
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    options = []
    if ax2 <= bx1:
        options.append("to the left of")
    if bx2 <= ax1:
        options.append("to the right of")
    if ay2 <= by1:
        options.append("above")
    if by2 <= ay1:
        options.append("below")
    if not options:
        return None
    return options[int(rng.integers(len(options)))]
