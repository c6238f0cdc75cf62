"""Pure-Python twin of ``hotpath._chunk``: the text of a provider's common stream chunk,
read from its bytes without parsing the JSON.

Most events of a streamed answer carry one piece of text and nothing else, in
the shape the provider always writes (an OpenAI chunk of choice 0, an
Anthropic ``text_delta``). ``quoted_text`` returns that piece when ``data``
has exactly the expected shape: ``head`` (ending with the opening quote of
the JSON string), the string with no escape in it, then ``tail``; and, when
given, no ``absent_after`` after the string and no ``absent_before`` before
``head``. Anything else is None, and the caller parses the event as JSON:
the fast path only ever says "this is the common chunk, and here is its
text", never "this is not valid".

Invariant: the twins return equal results (and raise the same
``UnicodeDecodeError`` for bytes that are not UTF-8) for every input;
``tests/hotpath/test_chunk.py`` runs the same cases against both.
"""

from __future__ import annotations


def quoted_text(
    data: bytes,
    head: bytes,
    tail: bytes,
    absent_after: bytes = b"",
    absent_before: bytes = b"",
) -> str | None:
    i = data.find(head)
    if i <= 0:
        return None  # (a chunk's JSON object opens before any field it holds)
    start = i + len(head)
    end = data.find(b'"', start)
    if end <= start or not data.startswith(tail, end):
        return None  # an empty string, or not followed by the shape's tail
    if data.find(b"\\", start, end) >= 0:
        return None  # an escape: JSON decodes it, not this
    if absent_after and data.find(absent_after, end) >= 0:
        return None
    if absent_before and data.find(absent_before, 0, i) >= 0:
        return None
    return data[start:end].decode()
