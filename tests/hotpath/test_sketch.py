"""One test body for both latency sketches: accuracy, window, merge, and twin agreement."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hotpath.sketch
from hotpath import _sketch_py
from tests.hotpath.twins import twins

IMPLS, _compiled = twins("hotpath._sketch", _sketch_py)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize("impl", IMPLS)
class TestSketch:
    @pytest.mark.parametrize("shape", ["lognormal", "bimodal"])
    def test_quantiles_within_two_percent(self, impl, shape):
        rng = random.Random(7)
        if shape == "lognormal":
            values = [rng.lognormvariate(-0.9, 1.2) for _ in range(20000)]
        else:  # fast answers and a slow mode (stalls), the shape hedging fights
            values = [
                rng.gauss(0.4, 0.05) if rng.random() < 0.9 else rng.gauss(8.0, 1.0)
                for _ in range(20000)
            ]
            values = [max(v, 0.001) for v in values]
        s = impl.LatencySketch(window_s=60, slots=6)
        for i, v in enumerate(values):
            s.add(v, now=i * 0.001)
        now = len(values) * 0.001
        assert s.count(now) == len(values)
        for q in (0.5, 0.95, 0.99):
            got, want = s.quantile(q, now), exact(values, q)
            assert abs(got - want) / want <= 0.02, (q, got, want)

    def test_window_forgets_old_values(self, impl):
        s = impl.LatencySketch(window_s=60, slots=6)
        for i in range(100):
            s.add(5.0, now=float(i) * 0.1)  # t in [0, 10)
        assert s.quantile(0.5, now=10) == pytest.approx(5.0, rel=0.01)
        for i in range(100):
            s.add(0.1, now=60 + i * 0.1)  # a minute later
        assert s.quantile(0.99, now=70) == pytest.approx(0.1, rel=0.01)
        assert s.count(now=70) == 100
        assert s.count(now=1000) == 0 and s.quantile(0.5, now=1000) == 0.0

    def test_merge_adds_counts_of_the_same_window(self, impl):
        a, b = impl.LatencySketch(), impl.LatencySketch()
        for i in range(50):
            a.add(1.0, now=i * 0.1)
            b.add(3.0, now=i * 0.1)
        a.merge(b)
        assert a.count(now=5) == 100
        assert a.quantile(0.25, now=5) == pytest.approx(1.0, rel=0.01)
        assert a.quantile(0.75, now=5) == pytest.approx(3.0, rel=0.01)
        with pytest.raises(ValueError):
            a.merge(impl.LatencySketch(window_s=10))

    def test_a_dump_loads_into_another_process_sketch(self, impl):
        import orjson

        a = impl.LatencySketch(window_s=60, slots=6)
        for i in range(200):
            a.add(0.01 * (i + 1), now=i * 0.25)
        wire = orjson.loads(orjson.dumps(a.dump()))  # through JSON, as between workers
        b = impl.LatencySketch(window_s=60, slots=6)
        b.load(wire)
        for q in (0.5, 0.95, 0.99):
            assert b.quantile(q, now=50) == a.quantile(q, now=50)
        assert b.count(now=50) == a.count(now=50)
        twin = _sketch_py.LatencySketch(window_s=60, slots=6)  # the dump is one format for both
        twin.load(wire)
        assert twin.quantile(0.95, now=50) == a.quantile(0.95, now=50)
        with pytest.raises(ValueError):
            impl.LatencySketch(window_s=10).load(wire)

    def test_extremes_are_clamped(self, impl):
        s = impl.LatencySketch()
        for v in (0.0, -1.0, 1e-9, 1e9):
            s.add(v, now=1.0)
        assert s.count(now=1.0) == 4
        assert s.quantile(1.0, now=1.0) == pytest.approx(1e5, rel=0.02)
        assert s.quantile(0.0, now=1.0) == pytest.approx(1e-6, rel=0.02)

    def test_bad_shapes_are_refused(self, impl):
        for kwargs in ({"alpha": 0}, {"alpha": 1.5}, {"slots": 0}, {"window_s": 0}):
            with pytest.raises(ValueError):
                impl.LatencySketch(**kwargs)


def test_selector_uses_compiled_module_in_a_normal_build():
    if os.environ.get("EDGE_NO_EXTENSIONS") == "1":
        assert hotpath.sketch.COMPILED is False
        return
    assert _compiled is not None, "hotpath._sketch did not build or import: run `make build`"
    assert (
        hotpath.sketch.COMPILED is True and hotpath.sketch.LatencySketch is _compiled.LatencySketch
    )


_ops = st.lists(
    st.tuples(
        st.floats(min_value=-1, max_value=1e6, allow_nan=False),
        st.floats(min_value=0, max_value=400),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=_ops, other=_ops, q=st.floats(0, 1), now=st.floats(0, 500))
def test_twins_agree_exactly(
    ops: list[tuple[float, float]], other: list[tuple[float, float]], q: float, now: float
) -> None:
    if _compiled is None:
        pytest.skip("hotpath._sketch is not built")
    sketches = []
    for impl in (_compiled, _sketch_py):
        s, o = impl.LatencySketch(window_s=60, slots=6), impl.LatencySketch(window_s=60, slots=6)
        for v, t in sorted(ops, key=lambda x: x[1]):
            s.add(v, t)
        for v, t in sorted(other, key=lambda x: x[1]):
            o.add(v, t)
        s.merge(o)
        sketches.append((s.count(now), s.quantile(q, now)))
    assert sketches[0] == sketches[1]
