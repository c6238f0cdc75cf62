"""Input tokens of image and document content blocks, by each provider's published formula.

``media_tokens(block, family)`` reads a content block of either dialect
(OpenAI ``image_url``, Responses ``input_image``, Anthropic ``image`` and
``document``) and prices it for the tokenizer family the request goes to:
``"claude"`` uses Anthropic's formula, the others OpenAI's. It never raises:
a block it cannot read costs the formula's maximum, so a budget errs high,
never low. Image sizes come from the first bytes of a base64 image (PNG,
JPEG, GIF, WebP headers); nothing is decoded beyond what the header needs
and nothing is fetched: a URL's size is unknown and costs the maximum.

Formulas (see /work/shared/reference/round2-facts.md, section 9):

- OpenAI tile models (gpt-4o, gpt-4.1 class): ``detail: "low"`` is 85 tokens;
  otherwise fit within 2048 x 2048, scale the shortest side down to 768, and
  count 170 a 512-px tile plus 85. The largest result is 8 tiles, 1445 tokens.
  ``auto`` and unknown details are priced as ``high``.
- Anthropic: width x height / 750 after scaling the long edge down to 1568 px,
  at most about 1,600 tokens (docs.claude.com, vision, "Calculate image costs").
- PDF pages (Anthropic's PDF support page: each page is sent as its extracted
  text, "typically 1,500 to 3,000 tokens per page", plus the page as an image
  at image rates): 2,250 text tokens (the middle of that range) plus a
  1,600-token page image, 3,850 a page, for every family (OpenAI documents no
  per-page figure; it too sends text and page images).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from typing import Any

from hotpath.tokens import estimate_text_tokens

OPENAI_LOW = 85
OPENAI_BASE = 85
OPENAI_TILE = 170
OPENAI_MAX = OPENAI_BASE + OPENAI_TILE * 8  # 768 x 2048 after scaling: 2 x 4 tiles
ANTHROPIC_LONG_EDGE = 1568
ANTHROPIC_MAX = 1600
PDF_TEXT_PER_PAGE = 2250
PDF_PAGE = PDF_TEXT_PER_PAGE + ANTHROPIC_MAX
# A document the gateway cannot see (a URL, a file id, unreadable bytes) is priced as
# this many pages: a guess, documented as one, since there is no upper bound to use.
UNKNOWN_PAGES = 10

# JPEG start-of-frame markers carry the size; the others (DHT C4, JPG C8, DAC CC) do not
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_HEAD = 64 * 1024  # bytes of an image read for its size: JPEG metadata segments come first
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_COUNT = re.compile(rb"/Count\s+(\d{1,6})")


def media_tokens(block: dict[str, Any], family: str) -> int:
    """Estimated input tokens of one image or document content block (0 for other blocks)."""
    try:
        return _tokens(block, family)
    except Exception:  # the one promise of this function: a figure, never an exception
        return OPENAI_MAX if family != "claude" else ANTHROPIC_MAX


def _tokens(block: dict[str, Any], family: str) -> int:
    kind = block.get("type")
    if kind == "image_url":  # Chat Completions: {"image_url": {"url", "detail"}} (or a bare url)
        inner = block.get("image_url")
        if isinstance(inner, dict):
            return image_tokens(_data_url_size(inner.get("url")), inner.get("detail"), family)
        return image_tokens(_data_url_size(inner), None, family)
    if kind == "input_image":  # Responses: {"image_url": str, "detail"} or a file_id
        return image_tokens(_data_url_size(block.get("image_url")), block.get("detail"), family)
    if kind == "image":  # Anthropic: {"source": base64 | url | file}
        return image_tokens(_source_size(block.get("source")), None, family)
    if kind == "document":
        return document_tokens(block.get("source"), family)
    return 0


def image_tokens(size: tuple[int, int] | None, detail: object, family: str) -> int:
    """One image of ``size`` (None: unknown) at ``detail`` for ``family``."""
    if family == "claude":
        return anthropic_image_tokens(size)
    if detail == "low":
        return OPENAI_LOW
    return openai_image_tokens(size)


def openai_image_tokens(size: tuple[int, int] | None) -> int:
    """OpenAI's tile formula at high detail; the largest figure when the size is unknown."""
    if size is None:
        return OPENAI_MAX
    w, h = float(size[0]), float(size[1])
    if w > 2048 or h > 2048:  # fit within 2048 x 2048, keeping the aspect ratio
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:  # then the shortest side comes down to 768
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return OPENAI_BASE + OPENAI_TILE * tiles


def anthropic_image_tokens(size: tuple[int, int] | None) -> int:
    """Anthropic's w x h / 750 after the long-edge downscale, capped; the cap when unknown."""
    if size is None:
        return ANTHROPIC_MAX
    w, h = float(size[0]), float(size[1])
    if max(w, h) > ANTHROPIC_LONG_EDGE:
        scale = ANTHROPIC_LONG_EDGE / max(w, h)
        w, h = w * scale, h * scale
    return max(1, min(ANTHROPIC_MAX, math.ceil(w * h / 750)))


def document_tokens(source: object, family: str) -> int:
    """An Anthropic document block's source: PDF pages, plain text, or nested content."""
    if not isinstance(source, dict):
        return PDF_PAGE * UNKNOWN_PAGES
    kind = source.get("type")
    if kind == "text" and isinstance(source.get("data"), str):
        return estimate_text_tokens(source["data"].encode(), family)
    if kind == "content":  # a custom document: a string or text and image blocks
        content = source.get("content")
        if isinstance(content, str):
            return estimate_text_tokens(content.encode(), family)
        total = 0
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "text":
                total += estimate_text_tokens(str(part.get("text", "")).encode(), family)
            elif isinstance(part, dict):
                total += _tokens(part, family)
        return total
    if kind == "base64" and isinstance(source.get("data"), str):
        pages = pdf_pages(_b64decode(source["data"]))
        return PDF_PAGE * (pages or UNKNOWN_PAGES)
    return PDF_PAGE * UNKNOWN_PAGES


def pdf_pages(data: bytes) -> int:
    """Pages of a PDF counted from its page objects; 0 when none are visible.

    Page objects (``/Type /Page``, not ``/Pages``) are plain text in most PDFs.
    A PDF that packs its objects into compressed streams hides them; the page
    tree's ``/Count`` (the largest, the root's) is tried next.
    """
    if not data.startswith(b"%PDF"):
        return 0
    pages = len(_PAGE.findall(data))
    if pages:
        return pages
    counts = [int(m) for m in _COUNT.findall(data)]
    return max(counts, default=0)


def _b64decode(text: str, limit: int | None = None) -> bytes:
    """Decode base64 (the first ``limit`` bytes' worth when given), ignoring whitespace."""
    if limit is not None:
        text = text[: (limit // 3 + 2) * 4 + 64]  # a little slack for line breaks
    compact = "".join(text.split())
    compact = compact[: len(compact) // 4 * 4]
    try:
        return base64.b64decode(compact)
    except (binascii.Error, ValueError):
        return b""


def _data_url_size(url: object) -> tuple[int, int] | None:
    if not isinstance(url, str) or not url.startswith("data:"):
        return None  # a remote image: its size is not known here
    _, _, payload = url.partition(",")
    return image_size(_b64decode(payload, _HEAD))


def _source_size(source: object) -> tuple[int, int] | None:
    if isinstance(source, dict) and source.get("type") == "base64":
        data = source.get("data")
        if isinstance(data, str):
            return image_size(_b64decode(data, _HEAD))
    return None


def image_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from the first bytes of a PNG, JPEG, GIF or WebP image."""
    size: tuple[int, int] | None = None
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            size = w, h
        elif head[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", head[6:10])
            size = w, h
        elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            size = _webp_size(head)
        elif head[:2] == b"\xff\xd8":
            size = _jpeg_size(head)
    except struct.error:  # the header was cut short
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy: the key frame header
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and head[20:21] == b"\x2f":  # lossless: 14-bit sizes minus one
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None  # lost the segment chain: corrupt, or cut before the frame header
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", head[i + 2 : i + 4])
        if marker in _SOF:
            if i + 9 > len(head):
                return None
            h, w = struct.unpack(">HH", head[i + 5 : i + 9])
            return w, h
        if marker in (0xD9, 0xDA):  # end of image, or the scan began: no frame header seen
            return None
        i += 2 + length
    return None


__all__ = ["media_tokens"]
