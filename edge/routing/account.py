"""One accounting path for every upstream attempt (no I/O).

An attempt goes as far as a ``Phase`` and ends one way (``End``). ``TABLE``
says, for each end, what the breaker hears, which ledger row the attempt
leaves and whether the key's budget is charged; the phase decides whether a
provider billed anything at all. Every attempt of every request passes
through ``verdict`` exactly once (primary, hedge, failover, retry, job;
served, lost, cancelled, failed, broken, or left behind by a client), so
the bill cannot depend on the path.

    phase reached        billed by the provider?
    NEVER_SENT           no (the request never left: connect failed)
    CONNECTING           no (sent, but no answer head: refused or not started)
    SENT                 input (a 200 head: the provider took the request)
    FIRST_TOKEN          input + the output it produced
    SERVED               input + output, from the provider's final usage

    end          breaker   ledger row   budget   what happened
    SERVED       success   answer       charged  the answer reached the client whole
    LEFT         -         answer       charged  the client left while it was being served
    DELIVERED    verdict   answer       charged  broke after bytes reached the client
    BROKEN       verdict   waste        -        broke before the client saw anything
    FAILED       verdict   waste        -        an error before its first token
    REPLACED     slow      waste        -        silent past its first-token deadline: replaced
    LOST         -         waste        -        a rival won the race
    CANCELLED    -         waste        -        the request was cancelled around it
    TIMEOUT      -         waste        -        the request's total deadline passed

An attempt that continues an answer broken after its first byte (a rescue,
``edge.routing.rescue``) ends through the same table; where the table says
``answer`` its row is ``rescue`` instead, charged the same: the answer is
the broken attempt's row plus the rescue's, each billed for what its
provider produced, so a request has at most one ``answer`` row.

``verdict`` means the error's own classification (``race.classify``):
timeouts, resets, 5xx and 429 count as failures, other 4xx do not; ``slow`` is
a failure for the breaker's rate rule only (``Breaker.slow``). ``-``
releases a probe slot without a verdict. Waste is recorded but not charged
to the key: hedges are the gateway's own spending, bounded by its budget.

Tokens: the provider's usage when it gave it (final, or Anthropic's input
at ``message_start``); otherwise the input estimate and the compiled
estimate of the output text that arrived. Input is counted once per attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from edge.budget.pricing import Tokens, split_usage
from hotpath.tokens import estimate_text_tokens


class Phase(IntEnum):
    NEVER_SENT = 0
    CONNECTING = 1
    SENT = 2
    FIRST_TOKEN = 3
    SERVED = 4


class End(IntEnum):
    SERVED = 0
    LEFT = 1
    DELIVERED = 2
    BROKEN = 3
    FAILED = 4
    LOST = 5
    CANCELLED = 6
    TIMEOUT = 7
    REPLACED = 8


SUCCESS, VERDICT, RELEASE, SLOW = "success", "verdict", "release", "slow"
ANSWER, WASTE, RESCUE = "answer", "waste", "rescue"


@dataclass(frozen=True, slots=True)
class Rule:
    breaker: str  # success | verdict | release | slow
    ledger: str  # answer | waste
    charged: bool
    outcome: str  # the attempt's metric label ("" = the error's own label)


TABLE: dict[End, Rule] = {
    End.SERVED: Rule(SUCCESS, ANSWER, True, "ok"),
    End.LEFT: Rule(RELEASE, ANSWER, True, "cancelled"),
    End.DELIVERED: Rule(VERDICT, ANSWER, True, ""),
    End.BROKEN: Rule(VERDICT, WASTE, False, ""),
    End.FAILED: Rule(VERDICT, WASTE, False, ""),
    End.LOST: Rule(RELEASE, WASTE, False, "lost"),
    End.CANCELLED: Rule(RELEASE, WASTE, False, "cancelled"),
    End.TIMEOUT: Rule(RELEASE, WASTE, False, "timeout"),
    End.REPLACED: Rule(SLOW, WASTE, False, "timeout"),
}


def billed(
    phase: Phase,
    usage: dict[str, Any] | None,
    final: bool,
    output: bytes,
    input_tokens: int,
    family: str = "o200k",
) -> Tokens:
    """What the provider billed for an attempt that reached ``phase``: its usage when ``final``
    (the stream got as far as its usage), else the estimate (see the module doc)."""
    if phase < Phase.SENT:
        return Tokens()
    got = Tokens() if not usage else split_usage(usage)
    if got.prompt == 0:  # no usage, or one without input (OpenAI's comes only at the end)
        got = Tokens(input_tokens, 0, 0, got.output)
    if final and usage:
        return got  # the provider's final figure
    produced = estimate_text_tokens(output, family) if output else 0
    out = got.output if got.output > produced else produced
    return Tokens(got.input, got.cache_read, got.cache_write, out)
