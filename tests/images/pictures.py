"""Pictures for the image tests, made with Pillow: honest ones and hostile ones."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image, PngImagePlugin

# The EXIF GPS tags (IFD 0x8825): a position in Paris, which must never be stored or sent on.
GPS_IFD = 0x8825
PARIS = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}


def picture(
    size: tuple[int, int] = (40, 30),
    colour: tuple[int, int, int] = (40, 80, 200),
    fmt: str = "PNG",
    **save: object,
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt, **save)
    return out.getvalue()


def jpeg_with_gps(size: tuple[int, int] = (64, 48)) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "PhoneModel X"  # Model
    exif[GPS_IFD] = PARIS
    return picture(size, (200, 30, 30), "JPEG", exif=exif.tobytes())


def png_with_gps(size: tuple[int, int] = (48, 36)) -> bytes:
    """A PNG carrying an eXIf chunk with a GPS position and a text chunk naming its author."""
    exif = Image.Exif()
    exif[0x0110] = "PhoneModel X"  # Model
    exif[GPS_IFD] = PARIS
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Jane Q. Visitor")
    return picture(size, (20, 160, 90), "PNG", exif=exif.tobytes(), pnginfo=text)


def noise_png(side: int) -> bytes:
    """Random pixels: a PNG that does not compress, about 3 * side * side bytes."""
    import os

    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(3 * side * side)).save(out, "PNG")
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 100_000) -> bytes:
    """A valid PNG header of side x side one-bit pixels (10 gigapixels at the default) whose
    compressed data is a few hundred bytes: decoding it would need gigabytes."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + (side + 7) // 8) * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [Image.new("P", (20, 20), i) for i in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


HTML_AS_PNG = b"<!doctype html><html><script>alert(document.cookie)</script></html>"
# A real PNG with an HTML page (and a ZIP's end record) appended: some parsers read one, some
# the other. Re-encoding keeps the picture only.
POLYGLOT_TAIL = b"<html><script>window.__polyglot=1</script></html>PK\x05\x06" + b"\x00" * 18


def polyglot() -> bytes:
    return picture((32, 32), (40, 160, 60)) + POLYGLOT_TAIL


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"
