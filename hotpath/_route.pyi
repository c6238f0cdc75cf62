CLOSED: int
HALF_OPEN: int
OPEN: int

class CandidateTable:
    n: int
    def __init__(self, n: int) -> None: ...
    def set_model(
        self,
        i: int,
        price_in: float,
        price_out: float,
        quality: float,
        window: int,
        caps: int,
        price_cached: float = -1.0,
    ) -> None: ...
    def set_health(self, i: int, state: int, p95_ms: float, last_failure: float) -> None: ...
    def cost(self, i: int, input_tokens: int, output_tokens: int, cached: int = 0) -> float: ...

def decide(
    t: CandidateTable,
    pool: list[int],
    pinned: int,
    strategy: int,
    quality_floor: float,
    p95_target_ms: float,
    warn_usd: float,
    degrade_usd: float,
    block_usd: float,
    cap_min_usd: float,
    never_block: bool,
    degrade_mode: int,
    input_tokens: int,
    max_output: int,
    needs: int,
    cached: list[int] | None = None,
) -> tuple[list[int], int, int, float, int]: ...
