"""The frozen object vocabulary and scene types of the synthetic scene generator.

Each object class is one OpenMoji pictogram, named by its Unicode character name in
lower case. Seven names that read badly in a caption are replaced by a friendlier
label (``"octagonal sign"`` becomes ``"stop sign"``). The label is the only name
used in manifests, captions, ``classes.json`` and detector class lists. The order of
:data:`CLASSES` is frozen: detector class ids and label matrices index into it, so
append new classes at the end and never reorder.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectClass:
    """One object class: a pictogram and the words that name it."""

    label: str
    codepoint: int
    plural: str

    @property
    def unicode_name(self) -> str:
        """The character's Unicode name in lower case."""
        return unicodedata.name(chr(self.codepoint)).lower()


# Labels that differ from the lower-case Unicode name. Keys are Unicode names.
FRIENDLY_NAMES = {
    "vertical traffic light": "traffic light",
    "octagonal sign": "stop sign",
    "cooking": "frying pan",
    "umbrella on ground": "beach umbrella",
    "couch and lamp": "couch",
    "black scissors": "scissors",
    "black telephone": "telephone",
}

# (codepoint, plural of the label). The label itself is derived from the Unicode name.
_CLASS_TABLE = [
    (0x1F697, "automobiles"),
    (0x1F68C, "buses"),
    (0x1F6B2, "bicycles"),
    (0x1F6A6, "traffic lights"),
    (0x1F6D1, "stop signs"),
    (0x1F6F5, "motor scooters"),
    (0x1F69A, "delivery trucks"),
    (0x1F695, "taxis"),
    (0x1F468, "men"),
    (0x1F469, "women"),
    (0x2615, "hot beverages"),
    (0x1F35E, "loaves of bread"),
    (0x1F355, "slices of pizza"),
    (0x1F374, "sets of fork and knife"),
    (0x1F373, "frying pans"),
    (0x1F34E, "red apples"),
    (0x1F34C, "bananas"),
    (0x1F955, "carrots"),
    (0x1F9C0, "cheese wedges"),
    (0x1F95B, "glasses of milk"),
    (0x1F354, "hamburgers"),
    (0x1F404, "cows"),
    (0x1F411, "sheep"),
    (0x1F416, "pigs"),
    (0x1F40E, "horses"),
    (0x1F413, "roosters"),
    (0x1F69C, "tractors"),
    (0x1F33D, "ears of maize"),
    (0x1F410, "goats"),
    (0x1F415, "dogs"),
    (0x1F408, "cats"),
    (0x26F1, "beach umbrellas"),
    (0x1F334, "palm trees"),
    (0x1F980, "crabs"),
    (0x1F420, "tropical fish"),
    (0x26F5, "sailboats"),
    (0x1F41A, "spiral shells"),
    (0x1F379, "tropical drinks"),
    (0x1F42C, "dolphins"),
    (0x1F366, "soft ice creams"),
    (0x1F6CB, "couches"),
    (0x1F6CF, "beds"),
    (0x1F4FA, "televisions"),
    (0x1FA91, "chairs"),
    (0x1FAB4, "potted plants"),
    (0x1F570, "mantelpiece clocks"),
    (0x1F9F8, "teddy bears"),
    (0x1F6C1, "bathtubs"),
    (0x1F333, "deciduous trees"),
    (0x1F332, "evergreen trees"),
    (0x1F344, "mushrooms"),
    (0x1F98C, "deer"),
    (0x1F43F, "chipmunks"),
    (0x1F994, "hedgehogs"),
    (0x1F989, "owls"),
    (0x1F40C, "snails"),
    (0x26FA, "tents"),
    (0x1F407, "rabbits"),
    (0x1F98B, "butterflies"),
    (0x1F4BB, "personal computers"),
    (0x1F4F1, "mobile phones"),
    (0x1F4DA, "piles of books"),
    (0x1F4BC, "briefcases"),
    (0x270F, "pencils"),
    (0x2702, "pairs of scissors"),
    (0x260E, "telephones"),
    (0x1F5A8, "printers"),
    (0x1FA81, "kites"),
    (0x26BD, "soccer balls"),
    (0x1F94F, "flying discs"),
    (0x1F986, "ducks"),
    (0x1F9FA, "baskets"),
]


def _label(codepoint: int) -> str:
    name = unicodedata.name(chr(codepoint)).lower()
    return FRIENDLY_NAMES.get(name, name)


CLASSES: tuple[ObjectClass, ...] = tuple(
    ObjectClass(_label(cp), cp, plural) for cp, plural in _CLASS_TABLE
)
VOCABULARY: tuple[str, ...] = tuple(c.label for c in CLASSES)
CLASS_INDEX: dict[str, int] = {label: i for i, label in enumerate(VOCABULARY)}

# Singular phrases for labels that take no plain "a"/"an".
SINGULAR_PHRASES = {
    "books": "a pile of books",
    "scissors": "a pair of scissors",
    "fork and knife": "a fork and knife",
    "bread": "a loaf of bread",
}


@dataclass(frozen=True)
class SceneType:
    """A scene type: where it is, what it shows and how often.

    ``weights`` maps a label to its relative frequency in this scene. Labels not
    listed get ``other_weight``, so any object can turn up anywhere, but rarely.
    """

    name: str
    places: tuple[str, ...]
    weights: dict[str, float]
    # (top, bottom) RGB colours of the procedural background and the texture of
    # the lower part: "plain", "tiles", "stripes" or "grain".
    palette: tuple[tuple[int, int, int], tuple[int, int, int]]
    ground: str
    other_weight: float = 0.02


SCENE_TYPES: dict[str, SceneType] = {
    scene.name: scene
    for scene in [
        SceneType(
            "street",
            ("on a street", "in the street", "on a city street"),
            {
                "automobile": 3.0,
                "bus": 1.5,
                "bicycle": 1.5,
                "traffic light": 1.5,
                "stop sign": 1.0,
                "motor scooter": 1.0,
                "delivery truck": 1.0,
                "taxi": 1.5,
                "man": 2.0,
                "woman": 2.0,
                "dog": 0.5,
            },
            ((170, 200, 230), (95, 95, 100)),
            "grain",
        ),
        SceneType(
            "kitchen",
            ("in a kitchen", "on a kitchen counter", "in the kitchen"),
            {
                "hot beverage": 2.0,
                "bread": 1.5,
                "slice of pizza": 1.0,
                "fork and knife": 1.5,
                "frying pan": 1.5,
                "red apple": 1.5,
                "banana": 1.5,
                "carrot": 1.0,
                "cheese wedge": 1.0,
                "glass of milk": 1.0,
                "hamburger": 0.7,
                "woman": 0.5,
                "man": 0.5,
                "cat": 0.3,
            },
            ((235, 225, 200), (200, 200, 205)),
            "tiles",
        ),
        SceneType(
            "farm",
            ("on a farm", "in a field", "on the farm"),
            {
                "cow": 3.0,
                "sheep": 2.5,
                "pig": 2.0,
                "horse": 1.5,
                "rooster": 1.5,
                "tractor": 1.0,
                "ear of maize": 1.0,
                "goat": 1.0,
                "dog": 1.0,
                "duck": 0.7,
                "man": 0.5,
                "basket": 0.4,
            },
            ((165, 205, 235), (110, 165, 70)),
            "grain",
        ),
        SceneType(
            "beach",
            ("on a beach", "at the beach", "by the sea"),
            {
                "beach umbrella": 2.5,
                "palm tree": 2.0,
                "crab": 1.5,
                "tropical fish": 1.0,
                "sailboat": 1.5,
                "spiral shell": 1.5,
                "tropical drink": 1.0,
                "dolphin": 1.0,
                "soft ice cream": 1.0,
                "woman": 1.0,
                "man": 1.0,
                "flying disc": 0.5,
            },
            ((120, 190, 235), (230, 210, 150)),
            "grain",
        ),
        SceneType(
            "home",
            ("at home", "in a living room", "in a house"),
            {
                "couch": 2.0,
                "bed": 1.5,
                "television": 2.0,
                "chair": 2.0,
                "potted plant": 1.5,
                "mantelpiece clock": 1.0,
                "teddy bear": 1.0,
                "bathtub": 0.7,
                "cat": 1.5,
                "dog": 1.0,
                "books": 1.0,
            },
            ((225, 215, 190), (150, 110, 75)),
            "stripes",
        ),
        SceneType(
            "forest",
            ("in a forest", "in the woods", "among the trees"),
            {
                "deciduous tree": 3.0,
                "evergreen tree": 3.0,
                "mushroom": 2.0,
                "deer": 1.5,
                "chipmunk": 1.5,
                "hedgehog": 1.0,
                "owl": 1.0,
                "snail": 1.0,
                "tent": 0.7,
                "rabbit": 1.0,
                "butterfly": 0.7,
            },
            ((150, 190, 140), (70, 110, 55)),
            "grain",
        ),
        SceneType(
            "park",
            ("in a park", "in the park", "on a lawn"),
            {
                "deciduous tree": 2.0,
                "dog": 2.0,
                "bicycle": 1.0,
                "kite": 1.5,
                "soccer ball": 1.5,
                "flying disc": 1.0,
                "duck": 1.0,
                "butterfly": 1.0,
                "soft ice cream": 0.7,
                "woman": 1.5,
                "man": 1.5,
                "basket": 0.7,
            },
            ((175, 210, 240), (130, 185, 95)),
            "plain",
        ),
        SceneType(
            "office",
            ("in an office", "on a desk", "at work"),
            {
                "personal computer": 2.5,
                "mobile phone": 1.5,
                "books": 1.5,
                "briefcase": 1.0,
                "pencil": 1.5,
                "scissors": 1.0,
                "telephone": 1.0,
                "printer": 1.0,
                "hot beverage": 1.0,
                "chair": 1.0,
                "potted plant": 0.7,
                "man": 0.7,
                "woman": 0.7,
            },
            ((215, 218, 222), (120, 130, 145)),
            "tiles",
        ),
    ]
}


def _check_tables() -> None:
    # Fails at import when a table names a label that is not in the vocabulary.
    if len(set(VOCABULARY)) != len(VOCABULARY):
        raise RuntimeError("scene vocabulary has duplicate labels")
    for scene in SCENE_TYPES.values():
        unknown = set(scene.weights) - set(VOCABULARY)
        if unknown:
            raise RuntimeError(f"scene {scene.name!r} names unknown labels {unknown}")
    unknown = set(SINGULAR_PHRASES) - set(VOCABULARY)
    if unknown:
        raise RuntimeError(f"singular phrases name unknown labels {unknown}")


_check_tables()
