"""Images for the report: loading, thumbnails, blurring and data URIs."""

from __future__ import annotations

import base64
import io
import logging

from PIL import Image, ImageFilter, UnidentifiedImageError

from dejavu.data.manifest import open_image

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 160
"""Longest side of a training image in the gallery, in pixels."""

NEIGHBOUR_SIZE = 96
"""Longest side of a public neighbour image in the gallery, in pixels."""

_BLUR_GRID = 6
"""Pixels on the long side that a blurred image keeps before it is smoothed."""


def load_image(ref: str) -> Image.Image | None:
    """Open an image reference, or return None and log a warning if it fails.

    A report is still useful when some images have moved since the audit, so a
    missing or unreadable image becomes a placeholder rather than an error.
    """
    try:
        return open_image(str(ref))
    except (OSError, ValueError, UnidentifiedImageError) as err:
        log.warning("cannot open image %s for the report: %s", ref, err)
        return None


def thumbnail(image: Image.Image, size: int) -> Image.Image:
    """Return a copy of ``image`` scaled so its longest side is at most ``size``."""
    copy = image.convert("RGB")
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    return copy


def blur(image: Image.Image, size: int = THUMBNAIL_SIZE) -> Image.Image:
    """Return a blurred thumbnail in which no object can be recognised.

    The image is first reduced to a grid of about ``_BLUR_GRID`` pixels on its long
    side, which discards every shape, then scaled back up and smoothed with a
    Gaussian blur whose radius is a tenth of the thumbnail size, so only the rough
    colour layout remains.
    """
    shown = thumbnail(image, size)
    width, height = shown.size
    scale = _BLUR_GRID / max(width, height)
    grid = (max(1, round(width * scale)), max(1, round(height * scale)))
    coarse = image.convert("RGB").resize(grid, Image.Resampling.BOX)
    smooth = coarse.resize(shown.size, Image.Resampling.BICUBIC)
    return smooth.filter(ImageFilter.GaussianBlur(radius=max(width, height) / 10))


def to_data_uri(image: Image.Image) -> str:
    """Encode an RGB image as a JPEG ``data:`` URI for inline HTML."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/jpeg;base64,{encoded}"
