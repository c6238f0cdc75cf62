def quoted_text(
    data: bytes,
    head: bytes,
    tail: bytes,
    absent_after: bytes = ...,
    absent_before: bytes = ...,
) -> str | None: ...
