"""The task label of a request: ``x-edge-task``, from the policy's bounded set.

Task labels split the quality score per kind of work (checkout, tagging, ..)
without letting clients mint metric series: a label the policy's
``quality.tasks`` does not list is recorded as ``other``, a request without
one as ``none``. A value that is no label at all (empty, too long, other
characters than ``[a-z0-9_.-]``) is the caller's mistake: a 400 naming the
header.
"""

from __future__ import annotations

import re

from edge.errors import InvalidRequest
from edge.quality.hybrid import ALL_TASKS, OTHER_TASK

NO_TASK = "none"
RESERVED = frozenset({ALL_TASKS, OTHER_TASK, NO_TASK})
LABEL = re.compile(rb"[a-z0-9][a-z0-9_.-]{0,63}")
POLICY_LABEL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def task_of(tasks: tuple[str, ...], header: bytes | None) -> str:
    """The label to record for a request's ``x-edge-task`` header."""
    if header is None:
        return NO_TASK
    value = header.strip().lower()
    if LABEL.fullmatch(value) is None:
        raise InvalidRequest(
            "x-edge-task: a task label is 1-64 characters of a-z, 0-9, '_', '.', '-' "
            "(starting with a letter or digit)",
            param="x-edge-task",
        )
    label = value.decode("ascii")
    return label if label in tasks else OTHER_TASK
