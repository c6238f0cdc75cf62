"""Image and document token counts: real image headers written here, both dialects, both formulas."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.budget.media import (
    ANTHROPIC_MAX,
    OPENAI_MAX,
    PDF_PAGE,
    UNKNOWN_PAGES,
    image_size,
    media_tokens,
    pdf_pages,
)
from hotpath.tokens import estimate_text_tokens


def png(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    )


def jpeg(w: int, h: int, sof: int = 0xC0, exif: int = 0) -> bytes:
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    out = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0
    if exif:  # a metadata segment before the frame header, as cameras write them
        out += b"\xff\xe1" + struct.pack(">H", exif + 2) + b"E" * exif
    frame = struct.pack(">BHHB", 8, h, w, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    out += b"\xff" + bytes([sof]) + struct.pack(">H", len(frame) + 2) + frame
    return out + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 32 + b"\xff\xd9"


def gif(w: int, h: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00" * 6 + b";"


def webp(w: int, h: int, kind: str) -> bytes:
    if kind == "VP8X":
        body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
        body += (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    elif kind == "VP8L":
        bits = (w - 1) | (h - 1) << 14
        body = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + bits.to_bytes(4, "little")
    else:
        frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", w, h)
        body = b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def pdf(pages: int) -> bytes:
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objs = [
        "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
        f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {pages} >> endobj",
        *(
            f"{3 + i} 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj"
            for i in range(pages)
        ),
    ]
    return ("%PDF-1.4\n" + "\n".join(objs) + "\ntrailer << /Root 1 0 R >>\n%%EOF\n").encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def openai_block(
    data: bytes, mime: str = "image/png", detail: str | None = "high"
) -> dict[str, Any]:
    image_url: dict[str, Any] = {"url": f"data:{mime};base64,{b64(data)}"}
    if detail is not None:
        image_url["detail"] = detail
    return {"type": "image_url", "image_url": image_url}


def anthropic_block(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": b64(data)}}


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(1024, 768), (1024, 768)),
        (jpeg(640, 480), (640, 480)),
        (jpeg(4032, 3024, sof=0xC2, exif=20000), (4032, 3024)),  # progressive, big EXIF first
        (gif(320, 200), (320, 200)),
        (webp(800, 600, "VP8X"), (800, 600)),
        (webp(1000, 50, "VP8L"), (1000, 50)),
        (webp(300, 301, "VP8"), (300, 301)),
    ],
)
def test_image_size_from_the_header(data: bytes, size: tuple[int, int]) -> None:
    assert image_size(data) == size


def test_image_size_of_garbage_is_unknown() -> None:
    for data in (
        b"",
        b"\x89PNG",
        b"\xff\xd8\xff\xe0\x00",
        b"GIF89a",
        b"RIFF\x00\x00\x00\x00WEBPXXXX",
    ):
        assert image_size(data) is None
    assert image_size(png(0, 10)) is None


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((1024, 1024), 765),  # the published example: 768 x 768 -> 4 tiles
        ((512, 512), 255),  # one tile, no scaling
        ((4096, 8192), 1105),  # fit 2048 -> 1024 x 2048 -> 768 x 1536: 2 x 3 tiles
        ((2048, 700), 85 + 170 * 8),  # shortest side already under 768
        ((100, 100), 255),
    ],
)
def test_openai_tile_formula(size: tuple[int, int], tokens: int) -> None:
    data = png(*size)
    for family in ("cl100k", "o200k"):
        assert media_tokens(openai_block(data), family) == tokens
        assert media_tokens(openai_block(data, detail="auto"), family) == tokens
        assert media_tokens(openai_block(data, detail=None), family) == tokens
        assert media_tokens(openai_block(data, detail="low"), family) == 85


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((200, 200), 54),  # 40,000 / 750 = 53.3
        ((1092, 1092), 1590),  # the published example: about 1,590
        ((3000, 1000), 1093),  # long edge down to 1568: 1568 x 522.7
        ((4000, 4000), ANTHROPIC_MAX),
    ],
)
def test_anthropic_formula(size: tuple[int, int], tokens: int) -> None:
    assert media_tokens(anthropic_block(png(*size)), "claude") == tokens
    # the block's dialect does not matter: the family the request goes to does
    assert media_tokens(openai_block(png(*size)), "claude") == tokens


def test_every_format_and_dialect() -> None:
    jpg = jpeg(1024, 1024, exif=3000)
    assert media_tokens(openai_block(jpg, "image/jpeg"), "o200k") == 765
    assert media_tokens(anthropic_block(jpg, "image/jpeg"), "o200k") == 765
    assert media_tokens(anthropic_block(gif(1024, 1024), "image/gif"), "cl100k") == 765
    assert media_tokens(anthropic_block(webp(1024, 1024, "VP8X"), "image/webp"), "o200k") == 765
    responses = {
        "type": "input_image",
        "detail": "high",
        "image_url": f"data:image/png;base64,{b64(png(1024, 1024))}",
    }
    assert media_tokens(responses, "o200k") == 765
    assert media_tokens({**responses, "detail": "low"}, "o200k") == 85
    # data URLs split across lines still decode
    wrapped = b64(png(512, 512))
    wrapped = "\n".join(wrapped[i : i + 76] for i in range(0, len(wrapped), 76))
    block = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + wrapped}}
    assert media_tokens(block, "cl100k") == 255


def test_unknown_sizes_cost_the_maximum() -> None:
    url: dict[str, Any] = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert media_tokens(url, "o200k") == OPENAI_MAX == 1445
    assert (
        media_tokens({"type": "image_url", "image_url": "https://example.com/a.png"}, "o200k")
        == 1445
    )
    assert media_tokens({**url, "image_url": {**url["image_url"], "detail": "low"}}, "o200k") == 85
    assert media_tokens(url, "claude") == ANTHROPIC_MAX
    remote = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
    assert media_tokens(remote, "claude") == ANTHROPIC_MAX
    assert media_tokens(remote, "cl100k") == OPENAI_MAX
    file_input = {"type": "input_image", "file_id": "file-123", "detail": "auto"}
    assert media_tokens(file_input, "o200k") == OPENAI_MAX


def test_documents() -> None:
    doc: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf"},
    }
    three = {**doc, "source": {**doc["source"], "data": b64(pdf(3))}}
    assert pdf_pages(pdf(3)) == 3
    assert media_tokens(three, "claude") == 3 * PDF_PAGE
    assert media_tokens(three, "o200k") == 3 * PDF_PAGE
    # objects in compressed streams: only the page tree's count is visible
    packed = b"%PDF-1.5\n1 0 obj << /Type /Pages /Count 7 /Kids [] >> endobj\n%%EOF"
    assert pdf_pages(packed) == 7
    text = "A short contract.\n\nClause 1: the parties agree to disagree."
    plain = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
    }
    for family in ("cl100k", "o200k", "claude"):
        assert media_tokens(plain, family) == estimate_text_tokens(text.encode(), family)
    content = {
        "type": "document",
        "source": {
            "type": "content",
            "content": [{"type": "text", "text": text}, anthropic_block(png(200, 200))],
        },
    }
    assert media_tokens(content, "claude") == estimate_text_tokens(text.encode(), "claude") + 54
    url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    assert media_tokens(url, "claude") == UNKNOWN_PAGES * PDF_PAGE


def test_malformed_blocks_get_a_conservative_figure() -> None:
    bad: list[dict[str, Any]] = [
        {"type": "image_url"},
        {"type": "image_url", "image_url": {"url": 5}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!not base64!!!"}},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + b64(b"\x89PNG junk")},
        },
        {"type": "image", "source": None},
        {"type": "image", "source": {"type": "base64", "data": 12}},
        {"type": "input_image", "image_url": ["x"]},
    ]
    for block in bad:
        assert media_tokens(block, "o200k") == OPENAI_MAX
        assert media_tokens(block, "claude") == ANTHROPIC_MAX
    for block in (
        {"type": "document"},
        {"type": "document", "source": {"type": "base64", "data": b64(b"not a pdf")}},
        {"type": "document", "source": {"type": "base64", "data": "%%%"}},
    ):
        assert media_tokens(block, "claude") == UNKNOWN_PAGES * PDF_PAGE
    assert media_tokens({"type": "text", "text": "hi"}, "o200k") == 0
    assert media_tokens(openai_block(png(100, 100)), "no-such-family") > 0


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["image_url", "input_image", "image", "document", "text", None]),
    payload=st.binary(max_size=200),
    junk=st.one_of(
        st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)
    ),
    family=st.sampled_from(["cl100k", "o200k", "claude"]),
)
def test_never_raises(kind: str | None, payload: bytes, junk: object, family: str) -> None:
    data = "data:image/png;base64," + b64(payload)
    blocks: list[dict[str, Any]] = [
        {"type": kind, "image_url": {"url": data, "detail": junk}},
        {"type": kind, "image_url": junk},
        {"type": kind, "source": {"type": "base64", "data": b64(payload)}},
        {"type": kind, "source": junk},
        {"type": kind, "source": {"type": "content", "content": junk}},
    ]
    for block in blocks:
        assert media_tokens(block, family) >= 0
