"""Attached images checked and re-encoded: metadata dropped, non-images and bombs refused."""

from __future__ import annotations

import base64
import hashlib
import io
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from arena.config import Settings
from arena.errors import ImageRefused
from arena.images.decoding import (
    ImageLimits,
    clean_image,
    clean_images,
    decode_data_url,
    images_body_bytes,
)
from tests.images.pictures import (
    GPS_IFD,
    HTML_AS_PNG,
    POLYGLOT_TAIL,
    animated_gif,
    data_url,
    jpeg_with_gps,
    picture,
    png_bomb,
    polyglot,
)

LIMITS = ImageLimits(max_images=4, max_bytes=5_000_000, max_pixels=25_000_000)


def _opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_a_png_is_re_encoded_and_named_by_its_hash() -> None:
    cleaned = clean_image(picture((40, 30)), LIMITS)
    assert (cleaned.mime_type, cleaned.width, cleaned.height) == ("image/png", 40, 30)
    assert cleaned.sha256 == hashlib.sha256(cleaned.data).hexdigest()
    assert _opened(cleaned.data).getpixel((5, 5)) == (40, 80, 200)
    assert cleaned.data_url().startswith("data:image/png;base64,")
    # The same picture gives the same bytes: stored once however often it is sent.
    assert clean_image(picture((40, 30)), LIMITS).sha256 == cleaned.sha256


def test_exif_with_the_gps_position_is_stripped() -> None:
    original = jpeg_with_gps()
    assert _opened(original).getexif().get_ifd(GPS_IFD)  # the position is really in the input
    assert b"PhoneModel X" in original
    cleaned = clean_image(original, LIMITS)
    assert cleaned.mime_type == "image/jpeg"
    stored = _opened(cleaned.data)
    assert not stored.getexif() and not stored.getexif().get_ifd(GPS_IFD)
    assert b"Exif" not in cleaned.data and b"PhoneModel X" not in cleaned.data
    assert "exif" not in stored.info


def test_the_exif_orientation_is_applied_before_it_is_dropped() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    raw = picture((60, 20), (200, 30, 30), "JPEG", exif=exif.tobytes())
    cleaned = clean_image(raw, LIMITS)
    assert (cleaned.width, cleaned.height) == (20, 60)


def test_png_text_chunks_and_colour_profiles_are_dropped() -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "Jane Secret, 12 Hidden Street")
    out = io.BytesIO()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(out, "PNG", pnginfo=info, icc_profile=b"x" * 200)
    cleaned = clean_image(out.getvalue(), LIMITS)
    assert b"Jane Secret" not in cleaned.data and b"iCCP" not in cleaned.data
    assert _opened(cleaned.data).info == {}


def test_html_named_png_is_refused() -> None:
    with pytest.raises(ImageRefused, match="not a PNG, JPEG, WebP or GIF"):
        clean_image(HTML_AS_PNG, LIMITS)


def test_a_polyglot_keeps_only_its_picture() -> None:
    cleaned = clean_image(polyglot(), LIMITS)
    assert POLYGLOT_TAIL not in cleaned.data and b"<script" not in cleaned.data
    assert _opened(cleaned.data).getpixel((0, 0)) == (40, 160, 60)


def test_other_formats_pillow_reads_are_refused() -> None:
    for fmt in ("BMP", "TIFF", "PPM"):
        with pytest.raises(ImageRefused):
            clean_image(picture((8, 8), fmt=fmt), LIMITS)


def test_a_gif_becomes_its_first_frame_as_png() -> None:
    cleaned = clean_image(animated_gif(), LIMITS)
    assert cleaned.mime_type == "image/png"
    stored = _opened(cleaned.data)
    assert getattr(stored, "n_frames", 1) == 1 and stored.size == (20, 20)


def test_webp_stays_webp() -> None:
    cleaned = clean_image(picture((16, 16), fmt="WEBP"), LIMITS)
    assert cleaned.mime_type == "image/webp" and _opened(cleaned.data).format == "WEBP"


def test_decompression_bombs_are_refused_before_decoding() -> None:
    # Over Pillow's own guard (gigapixels), and over the setting but under Pillow's guard.
    for bomb, limit in ((png_bomb(100_000), LIMITS), (png_bomb(6_000), LIMITS)):
        started = time.perf_counter()
        with pytest.raises(ImageRefused, match="pixels"):
            clean_image(bomb, limit)
        assert time.perf_counter() - started < 1.0


def test_the_pixel_limit_is_the_setting() -> None:
    small = ImageLimits(max_images=4, max_bytes=5_000_000, max_pixels=1_000)
    with pytest.raises(ImageRefused, match="40x30 pixels is over the limit of 1,000 pixels"):
        clean_image(picture((40, 30)), small)


def test_a_truncated_picture_is_refused() -> None:
    raw = picture((200, 200), fmt="JPEG")
    with pytest.raises(ImageRefused):
        clean_image(raw[: len(raw) // 2], LIMITS)


def test_data_urls_are_checked_before_decoding() -> None:
    raw = picture()
    assert decode_data_url(data_url(raw), LIMITS) == raw
    with pytest.raises(ImageRefused, match="not an image data URL"):
        decode_data_url("https://example.org/cat.png", LIMITS)
    with pytest.raises(ImageRefused, match="base64 is damaged"):
        decode_data_url("data:image/png;base64,@@@@", LIMITS)
    tiny = ImageLimits(max_images=4, max_bytes=1024, max_pixels=25_000_000)
    big = data_url(b"\x00" * 5000)
    with pytest.raises(ImageRefused, match="over the limit of 1,024 bytes"):
        decode_data_url(big, tiny)


def test_too_many_images_are_refused_naming_the_limit() -> None:
    urls = [data_url(picture())] * 5
    with pytest.raises(ImageRefused, match="5 images is over the limit of 4"):
        clean_images(urls, LIMITS)
    with pytest.raises(ImageRefused, match=r"images\[1\]"):
        clean_images([data_url(picture()), data_url(HTML_AS_PNG)], LIMITS)


def test_the_body_limit_fits_four_largest_images_in_base64() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    four = 4 * len(base64.b64encode(b"\x00" * settings.max_image_bytes))
    assert images_body_bytes(settings) >= settings.max_body_bytes + four
    # and not much more: a 50 MB body is still refused
    assert images_body_bytes(settings) < 50_000_000


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_give_a_clean_image_or_a_refusal(raw: bytes) -> None:
    try:
        cleaned = clean_image(raw, LIMITS)
    except ImageRefused:
        return
    assert _opened(cleaned.data).format in ("PNG", "JPEG", "WEBP")


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=64))
def test_damaged_pictures_give_a_clean_image_or_a_refusal(cut: int, noise: bytes) -> None:
    raw = bytearray(picture((30, 30), fmt="JPEG"))
    at = cut % len(raw)
    raw[at : at + len(noise)] = noise
    try:
        clean_image(bytes(raw), LIMITS)
    except ImageRefused:
        pass
