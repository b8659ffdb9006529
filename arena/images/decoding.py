"""An attached image from a data URL to clean bytes: decoded by Pillow and encoded anew, so that
metadata (EXIF with its GPS position, text chunks, colour profiles) and anything appended to the
file are dropped, and whatever is not really an image is refused."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from arena.config import Settings
from arena.errors import ImageRefused

# What a visitor may attach, by Pillow's format names; a GIF or an animated image is its first
# frame. The type a data URL declares is not trusted: the bytes say what they are.
ACCEPTED_FORMATS: Final[tuple[str, ...]] = ("PNG", "JPEG", "WEBP", "GIF")
# The format each is stored in: a GIF's first frame as PNG (lossless, and no animation left).
_STORED_AS: Final[dict[str, tuple[str, str]]] = {
    "PNG": ("PNG", "image/png"),
    "GIF": ("PNG", "image/png"),
    "JPEG": ("JPEG", "image/jpeg"),
    "WEBP": ("WEBP", "image/webp"),
}
STORED_MIME_TYPES: Final = frozenset(mime for _, mime in _STORED_AS.values())
_DATA_URL: Final = re.compile(r"data:image/[a-z0-9.+-]{1,40};base64,", re.IGNORECASE)
# Room in a request body for one image beyond its base64: the data URL's head and JSON quoting.
_DATA_URL_OVERHEAD: Final = 100
_JPEG_QUALITY: Final = 90
_WEBP_QUALITY: Final = 90


@dataclass(frozen=True)
class ImageLimits:
    max_images: int
    max_bytes: int
    max_pixels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(
            settings.max_images_per_prompt, settings.max_image_bytes, settings.max_image_pixels
        )

    @property
    def max_base64_chars(self) -> int:
        return 4 * math.ceil(self.max_bytes / 3)


def images_body_bytes(settings: Settings) -> int:
    """The body limit of a request that may carry a prompt's images: the usual limit plus each
    image at its largest, in base64 within a data URL."""
    limits = ImageLimits.from_settings(settings)
    per_image = limits.max_base64_chars + _DATA_URL_OVERHEAD
    return settings.max_body_bytes + limits.max_images * per_image


@dataclass(frozen=True)
class CleanImage:
    """An image as stored and sent upstream: re-encoded bytes, named by their SHA-256."""

    sha256: str
    mime_type: str
    width: int
    height: int
    data: bytes

    @functools.cached_property
    def _data_url(self) -> str:
        # Made once: both sides of a battle send the same (up to megabytes long) string.
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def data_url(self) -> str:
        return self._data_url


def decode_data_url(data_url: str, limits: ImageLimits, *, label: str = "image") -> bytes:
    """The file a data URL carries, refused when it is not base64 or is over the size limit."""
    head = _DATA_URL.match(data_url)
    if head is None:
        raise ImageRefused(
            f"{label}: not an image data URL; send data:image/png;base64,... (PNG, JPEG, WebP "
            "or GIF)"
        )
    payload = data_url[head.end() :]
    if len(payload) > limits.max_base64_chars:
        raise ImageRefused(
            f"{label}: about {len(payload) * 3 // 4:,} bytes is over the limit of "
            f"{limits.max_bytes:,} bytes per image; send a smaller image"
        )
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused(
            f"{label}: the data URL's base64 is damaged; attach the file again"
        ) from None
    if len(raw) > limits.max_bytes:
        raise ImageRefused(
            f"{label}: {len(raw):,} bytes is over the limit of {limits.max_bytes:,} bytes per "
            "image; send a smaller image"
        )
    return raw


def clean_image(raw: bytes, limits: ImageLimits, *, label: str = "image") -> CleanImage:
    """Decode `raw` (PNG, JPEG, WebP or GIF, first frame) and encode it anew without metadata.

    The size in pixels is read from the header and checked before any pixel is decoded;
    Pillow's own decompression-bomb guard stands behind that check."""
    not_an_image = ImageRefused(
        f"{label}: the file is not a PNG, JPEG, WebP or GIF image that can be read; attach a "
        "picture in one of those formats"
    )
    try:
        with Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS) as opened:
            source_format = opened.format or ""
            width, height = opened.size
            if width * height > limits.max_pixels:
                raise ImageRefused(
                    f"{label}: {width}x{height} pixels is over the limit of "
                    f"{limits.max_pixels:,} pixels; send a smaller picture"
                )
            opened.seek(0)
            opened.load()
            # The orientation lives in EXIF, which is dropped: turn the pixels as it says first.
            upright = ImageOps.exif_transpose(opened)
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(
            f"{label}: the picture is over the limit of {limits.max_pixels:,} pixels; send a "
            "smaller picture"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        # Pillow's plugins raise these on damaged or truncated files.
        raise not_an_image from None
    if source_format not in _STORED_AS:
        raise not_an_image
    stored_format, mime_type = _STORED_AS[source_format]
    picture = _storable(upright, stored_format)
    # No `info` carried over: Pillow's encoders would copy a colour profile or EXIF from it.
    picture.info = {}
    out = io.BytesIO()
    if stored_format == "JPEG":
        picture.save(out, "JPEG", quality=_JPEG_QUALITY, optimize=True)
    elif stored_format == "WEBP":
        picture.save(out, "WEBP", quality=_WEBP_QUALITY)
    else:
        picture.save(out, "PNG", optimize=False)
    data = out.getvalue()
    return CleanImage(
        sha256=hashlib.sha256(data).hexdigest(),
        mime_type=mime_type,
        width=picture.width,
        height=picture.height,
        data=data,
    )


def _storable(picture: Image.Image, stored_format: str) -> Image.Image:
    """The picture in a mode the stored format holds without surprises."""
    mode = picture.mode
    has_alpha = mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
    if stored_format == "JPEG":
        return picture if mode in ("L", "RGB") else picture.convert("RGB")
    if stored_format == "WEBP":
        if mode in ("RGB", "RGBA"):
            return picture
        return picture.convert("RGBA" if has_alpha else "RGB")
    if mode in ("L", "LA", "RGB", "RGBA"):
        return picture
    return picture.convert("RGBA" if has_alpha else "RGB")


def clean_images(data_urls: Sequence[str], limits: ImageLimits) -> list[CleanImage]:
    """Every attached image checked and re-encoded, in order; the first one refused raises.
    CPU work (decoding a large picture takes tens of milliseconds): run it off the event loop."""
    if len(data_urls) > limits.max_images:
        raise ImageRefused(
            f"images: {len(data_urls)} images is over the limit of {limits.max_images} per "
            "prompt; remove some"
        )
    cleaned: list[CleanImage] = []
    # The same picture attached twice is decoded once.
    done: dict[str, CleanImage] = {}
    for index, data_url in enumerate(data_urls):
        label = f"images[{index}]"
        if data_url not in done:
            raw = decode_data_url(data_url, limits, label=label)
            done[data_url] = clean_image(raw, limits, label=label)
        cleaned.append(done[data_url])
    return cleaned
