"""Measures against numpy formulas written out here, independently of the
module: direct norms of differences, and CKA from the n x n centred Grams."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tb_activations import encoding, measures, metadata, passes

FIELDS = metadata.LAYER_STATS_FIELDS
RNG = np.random.default_rng(0)


def change(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    den = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if den == 0 else float(np.linalg.norm(a - b) / den)


def cka_hkh(a: np.ndarray, b: np.ndarray) -> float | None:
    """Kornblith et al.'s linear CKA as HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
    with K = X X^T, L = Y Y^T and the centring matrix H: tr(KHLH)."""
    x = a.reshape(-1, a.shape[-1]).astype(np.float64)
    y = b.reshape(-1, b.shape[-1]).astype(np.float64)
    n = x.shape[0]
    if n < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    h = np.eye(n) - np.ones((n, n)) / n
    k = h @ (x @ x.T) @ h
    m = h @ (y @ y.T) @ h
    # What is left of a constant column after centring is rounding.
    scale = np.abs(x).max() ** 2 * np.abs(y).max() ** 2 * n**2
    den = math.sqrt(np.sum(k * k) * np.sum(m * m))
    return None if den <= 1e-20 * scale else float(np.sum(k * m) / den)


def track(maps: dict[int, np.ndarray], path: str = "conv", tracker=None):
    """Feeds the maps in step order; returns {step: (stats, header)} as the
    writer stores them (float32 statistics)."""
    tracker = tracker or measures.Tracker()
    out = {}
    for step, x in maps.items():
        extra, header = tracker.update(path, step, x)
        stats = np.concatenate([encoding.compute_stats(x), extra], axis=2).astype(np.float32)
        out[step] = (stats, header)
    return out


def rows(recorded, kept=None, fields=FIELDS):
    kept = sorted(recorded) if kept is None else kept
    logged = measures.Logged(
        kept, [recorded[s][0] for s in kept], [recorded[s][1] for s in kept], fields
    )
    return measures.channel_rows(logged), measures.layer_rows(logged)


def normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# -- change: per channel and for the layer ---------------------------------------

SHAPE = (2, 5, 4, 3)
A = normal(SHAPE, 1)
ZERO = np.zeros(SHAPE, np.float32)
HALF_ZERO = A.copy()
HALF_ZERO[..., 1] = 0

CHANGE_CASES = [
    # (id, map at step 0, map at step 1, expected per-channel change)
    ("random", A, normal(SHAPE, 2), None),
    ("both all zero", ZERO, ZERO, [0.0, 0.0, 0.0]),
    ("zero then not", ZERO, A, [1.0, 1.0, 1.0]),
    ("not then zero", A, ZERO, [1.0, 1.0, 1.0]),
    ("sign flip", A, -A, [2.0, 2.0, 2.0]),
    ("identical", A, A.copy(), [0.0, 0.0, 0.0]),
    ("one channel silenced", A, HALF_ZERO, [0.0, 1.0, 0.0]),
]


@pytest.mark.parametrize(
    "a, b, expected", [c[1:] for c in CHANGE_CASES], ids=[c[0] for c in CHANGE_CASES]
)
def test_change_matches_the_formula(a, b, expected):
    recorded = track({0: a, 1: b})
    channels, layer = rows(recorded)
    stats1 = recorded[1][0]
    # The stored sums are the map's, at full precision.
    np.testing.assert_allclose(
        stats1[..., 6], (b.astype(np.float64) ** 2).sum(axis=(1, 2)), rtol=1e-6
    )
    np.testing.assert_allclose(
        stats1[..., 7], ((b.astype(np.float64) - a) ** 2).sum(axis=(1, 2)), rtol=1e-6
    )
    want = [change(a[..., c], b[..., c]) for c in range(a.shape[-1])]
    if expected is not None:
        np.testing.assert_allclose(want, expected, atol=1e-7)  # the formula itself
    np.testing.assert_allclose(channels.values["change_prev"][:, 1], want, atol=1e-6)
    np.testing.assert_allclose(channels.values["change_start"][:, 1], want, atol=1e-6)
    assert np.isnan(channels.values["change_prev"][:, 0]).all()  # null at the first step
    np.testing.assert_array_equal(channels.values["change_start"][:, 0], 0.0)
    assert layer.values["change_prev"][1] == pytest.approx(change(a, b), abs=1e-6)
    assert layer.values["change_start"][1] == pytest.approx(change(a, b), abs=1e-6)
    assert channels.reasons == {} and layer.reasons == {}


def test_change_start_is_against_the_first_step_and_prev_against_the_one_before():
    maps = {s: normal(SHAPE, 10 + s) for s in (0, 5, 9, 14)}
    channels, layer = rows(track(maps))
    steps = list(maps)
    for i, s in enumerate(steps[1:], 1):
        p = steps[i - 1]
        for c in range(3):
            assert channels.values["change_prev"][c, i] == pytest.approx(
                change(maps[s][..., c], maps[p][..., c]), abs=1e-6
            )
            assert channels.values["change_start"][c, i] == pytest.approx(
                change(maps[s][..., c], maps[0][..., c]), abs=1e-6
            )
        assert layer.values["drift_prev"][i] == pytest.approx(
            1 - cka_hkh(maps[s], maps[p]), abs=1e-5
        )
        assert layer.values["drift_start"][i] == pytest.approx(
            1 - cka_hkh(maps[s], maps[0]), abs=1e-5
        )
    assert layer.values["drift_start"][0] == 0.0 and np.isnan(layer.values["drift_prev"][0])


# -- CKA ---------------------------------------------------------------------------

CONSTANT = np.broadcast_to(np.arange(3, dtype=np.float32), SHAPE).copy()
CKA_CASES = [
    # (id, a, b): the tracker's CKA must be cka_hkh's, None where that is None
    ("random, c <= n", normal((2, 6, 5, 4), 3), normal((2, 6, 5, 4), 4)),
    ("related, c <= n", A, A * 3 + 0.1 * normal(SHAPE, 5)),
    ("random, n < c", normal((1, 2, 3, 10), 6), normal((1, 2, 3, 10), 7)),
    ("related, n < c", normal((2, 2, 2, 9), 8), normal((2, 2, 2, 9), 8) ** 2),
    ("n == c", normal((1, 2, 2, 4), 9), normal((1, 2, 2, 4), 10)),
    ("2 positions", normal((1, 1, 2, 3), 11), normal((1, 1, 2, 3), 12)),
    ("constant columns", CONSTANT, A),
    ("zero map", ZERO, A),
    ("NaN", np.where(A > 1, np.nan, A).astype(np.float32), A),
    ("infinity", np.where(A > 1, np.inf, A).astype(np.float32), A),
]


@pytest.mark.parametrize("a, b", [c[1:] for c in CKA_CASES], ids=[c[0] for c in CKA_CASES])
def test_cka_matches_the_centred_gram_formula(a, b):
    header = track({0: a, 1: b})[1][1]
    want = cka_hkh(b, a)
    for key in ("cka_prev", "cka_start"):
        if want is None:
            assert header[key] is None
        else:
            assert header[key] == pytest.approx(want, abs=1e-5)
    assert measures.linear_cka(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])) == (
        None if want is None else pytest.approx(want, abs=1e-9)
    )


def test_both_cka_forms_give_the_same_value():
    # Repeating every position twice leaves CKA as it is (same column means,
    # Grams scaled alike) and moves the matrix from n < c (the n x n Gram
    # form) to c <= n (the c x c cross-covariance form).
    x = normal((1, 3, 4, 20), 13)  # n = 12 < c = 20
    y = x + 0.5 * normal(x.shape, 14)
    few = track({0: x, 1: y})[1][1]["cka_prev"]
    tall = track({0: np.tile(x, (2, 1, 1, 1)), 1: np.tile(y, (2, 1, 1, 1))})[1][1]["cka_prev"]
    assert few == pytest.approx(cka_hkh(y, x), abs=1e-5)
    assert tall == pytest.approx(few, abs=1e-5)


def test_nan_makes_the_measures_of_that_channel_null():
    bad = A.copy()
    bad[0, 0, 0, 2] = np.nan
    channels, layer = rows(track({0: A, 1: bad, 2: A}))
    assert np.isnan(channels.values["change_prev"][2, 1:]).all()
    np.testing.assert_allclose(channels.values["change_prev"][:2, 1:], 0.0, atol=0)
    assert np.isnan(layer.values["change_prev"][1:]).all()
    assert np.isnan(layer.values["drift_prev"][1:]).all()
    assert layer.values["drift_start"][2] == pytest.approx(0.0, abs=1e-6)
    assert channels.reasons == {}


def test_a_shape_change_resets_the_references():
    tracker = measures.Tracker()
    track({0: A, 10: normal(SHAPE, 20)}, tracker=tracker)
    other = normal((2, 5, 4, 7), 21)
    extra, header = tracker.update("conv", 20, other)
    assert header == {"prev_step": None, "start_step": 20, "cka_prev": None, "cka_start": 1.0}
    assert np.isnan(extra[..., 1]).all()
    np.testing.assert_array_equal(extra[..., 2], 0.0)
    extra, header = tracker.update("conv", 30, other)
    assert (header["prev_step"], header["start_step"]) == (20, 20)
    # Layers are tracked apart.
    assert tracker.update("other", 30, A)[1]["prev_step"] is None


def test_a_non_image_array_is_refused():
    with pytest.raises(ValueError, match=r"Received: nhwc.shape=\(3, 4\)"):
        measures.Tracker().update("conv", 0, np.zeros((3, 4)))


# -- references the kept steps do not have ----------------------------------------


def test_a_dropped_reference_makes_the_value_unavailable_with_the_reason():
    maps = {s: normal(SHAPE, 30 + s) for s in (0, 10, 20, 30, 40)}
    recorded = track(maps)
    channels, layer = rows(recorded, kept=[0, 10, 30, 40])
    assert np.isnan(channels.values["change_prev"][:, 2]).all()
    assert np.isnan(layer.values["drift_prev"][2])
    # The others stand: 10 against 0, 40 against 30, and all against 0.
    assert channels.values["change_prev"][0, 3] == pytest.approx(
        change(maps[40][..., 0], maps[30][..., 0]), abs=1e-6
    )
    assert layer.values["drift_start"][2] == pytest.approx(1 - cka_hkh(maps[30], maps[0]), abs=1e-5)
    for rows_ in (channels, layer):
        assert (
            "step 20, the step logged before, was dropped by sampling"
            in rows_.reasons["change_prev"]
        )
        assert "(at step 30)" in rows_.reasons["change_prev"]
        assert "change_start" not in rows_.reasons
    assert layer.reasons["drift_prev"] == layer.reasons["change_prev"]


def test_a_dropped_first_step_makes_change_start_unavailable_after_it():
    maps = {s: normal(SHAPE, 40 + s) for s in (0, 10, 20)}
    channels, layer = rows(track(maps), kept=[10, 20])
    np.testing.assert_array_equal(channels.values["change_start"][:, 0], 0.0)
    assert np.isnan(channels.values["change_start"][:, 1]).all()
    assert np.isnan(layer.values["drift_start"]).all()
    assert "step 0, the first step logged, was dropped by sampling" in layer.reasons["drift_start"]
    assert channels.values["change_prev"][1, 1] == pytest.approx(
        change(maps[20][..., 1], maps[10][..., 1]), abs=1e-6
    )


def test_steps_of_two_loggers_are_not_compared():
    first = track({0: A, 10: normal(SHAPE, 50)})
    second = track({20: normal(SHAPE, 51), 30: normal(SHAPE, 52)})  # a new logger, same run
    recorded = first | second
    channels, layer = rows(recorded)
    assert np.isnan(channels.values["change_prev"][:, 2]).all()
    assert not np.isnan(channels.values["change_prev"][:, 3]).any()
    assert "the writer measured no step before this one" in channels.reasons["change_prev"]
    assert np.isnan(layer.values["drift_start"][2:]).all()
    assert (
        "the writer's first step is 20, not the first kept step (0)" in layer.reasons["drift_start"]
    )


def test_a_log_without_measures_keeps_dead_and_mean():
    x = np.maximum(A, 0)
    x[..., 0] = 0
    x[0, 0, 0, 1] = np.nan
    old = [encoding.compute_stats(x)] * 2  # six fields: a log from before the measures
    args = ([0, 5], old, [{"epoch": 0.0}, {"epoch": 1.0}], metadata.STATS_FIELDS)
    channels = measures.channel_rows(measures.Logged(*args))
    layer = measures.layer_rows(measures.Logged(*args))
    for name in ("change_prev", "change_start"):
        assert np.isnan(channels.values[name]).all()
        assert channels.reasons[name] == measures.NO_MEASURES
    for name in ("change_prev", "change_start", "drift_prev", "drift_start"):
        assert np.isnan(layer.values[name]).all()
        assert layer.reasons[name] == "logged by a version without measures"
    np.testing.assert_array_equal(
        channels.values["dead"], [[True, True], [False, False], [False, False]]
    )
    np.testing.assert_allclose(layer.values["dead_fraction"], 1 / 3)
    # The mean of the finite values of the whole layer.
    np.testing.assert_allclose(layer.values["mean"], np.nanmean(x.astype(np.float64)), rtol=1e-6)


# -- dead channels -------------------------------------------------------------------


def dead_series(pattern: list[str]):
    """Per step a string of channel states, '0' dead and '1' alive."""
    steps = [10 * i for i in range(len(pattern))]
    maps = {}
    for s, states in zip(steps, pattern):
        x = np.abs(normal((2, 3, 3, len(states)), s)) + 0.1
        for c, state in enumerate(states):
            if state == "0":
                x[..., c] = 0
        maps[s] = x
    return steps, rows(track(maps))


DEAD_CASES = [
    # (id, per-step channel states, events, never_active)
    ("all alive", ["111", "111"], [], []),
    ("dead from the start", ["011", "011", "011"], [], [0]),
    ("dies", ["111", "101", "101"], [(1, "died", 10)], []),
    (
        "dies and revives",
        ["111", "110", "111", "110"],
        [(2, "died", 10), (2, "revived", 20), (2, "died", 30)],
        [],
    ),
    ("two at one step", ["111", "001"], [(0, "died", 10), (1, "died", 10)], []),
    ("revives", ["011", "111"], [(0, "revived", 10)], []),
    ("one step", ["010"], [], [0, 2]),
]


@pytest.mark.parametrize(
    "pattern, want_events, want_never", [c[1:] for c in DEAD_CASES], ids=[c[0] for c in DEAD_CASES]
)
def test_events_and_never_active(pattern, want_events, want_never):
    steps, (channels, layer) = dead_series(pattern)
    dead = channels.values["dead"]
    np.testing.assert_array_equal(
        dead, [[s[c] == "0" for s in pattern] for c in range(len(pattern[0]))]
    )
    got = measures.events(steps, dead)
    assert got == [{"channel": c, "kind": k, "step": s} for c, k, s in want_events]
    assert measures.never_active(dead) == want_never
    np.testing.assert_allclose(
        layer.values["dead_fraction"], [s.count("0") / len(s) for s in pattern]
    )


def test_a_single_zero_pixel_is_not_dead():
    x = np.abs(A) + 1
    x[0, ..., 0] = 0  # probe 0 dead, probe 1 not
    channels, _ = rows(track({0: x}))
    assert not channels.values["dead"][0, 0]


# -- statistics rows ------------------------------------------------------------------


def test_statistic_rows_over_probes():
    x = normal((3, 4, 4, 2), 60)
    x[1, :, :, 1] = np.nan  # no finite value in probe 1 of channel 1
    x[0, 0, 0, 0] = 0
    stats = [encoding.compute_stats(x), encoding.compute_stats(x * 2)]
    got = measures.statistic_rows(stats, metadata.STATS_FIELDS)
    for i, scale in enumerate((1, 2)):
        y = x.astype(np.float64) * scale
        for c in range(2):
            assert got["mean"][c, i] == pytest.approx(np.nanmean(y[..., c]), rel=1e-6)
            assert got["max"][c, i] == pytest.approx(np.nanmax(y[..., c]), rel=1e-6)
            assert got["zero_fraction"][c, i] == pytest.approx(np.mean(y[..., c] == 0))


# -- bad input and JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (([0, 1], [np.zeros((1, 2, 9))], [{}, {}], FIELDS), "one statistics array per step"),
        (([0], [np.zeros((1, 2, 9))], [], FIELDS), "one header per step"),
        (([1, 1], [np.zeros((1, 2, 9))] * 2, [{}, {}], FIELDS), "Steps must increase"),
        (([0], [np.zeros((1, 2, 9))], [{}], ("min",)), "lack the fields"),
        (([0, 1], [np.zeros((1, 2, 9)), np.zeros((1, 3, 9))], [{}, {}], FIELDS), "one shape"),
        (([0], [np.zeros((1, 2, 4))], [{}], FIELDS), "with 9 fields"),
    ],
)
def test_bad_series_are_refused_with_the_received_values(args, message):
    with pytest.raises(ValueError, match=message):
        measures.channel_rows(measures.Logged(*args))


def test_garbage_header_values_count_as_missing():
    recorded = track({0: A, 1: normal(SHAPE, 70)})
    headers = [recorded[0][1], {"prev_step": "0", "start_step": True, "cka_prev": "x"}]
    layer = measures.layer_rows(
        measures.Logged([0, 1], [recorded[s][0] for s in (0, 1)], headers, FIELDS)
    )
    assert np.isnan(layer.values["drift_prev"][1]) and np.isnan(layer.values["change_start"][1])
    assert "drift_prev" in layer.reasons


def test_rows_to_json_have_null_for_missing_values():
    channels, layer = rows(track({0: A, 1: normal(SHAPE, 71)}))
    body = layer.to_json()
    assert body["steps"] == [0, 1]
    assert body["values"]["change_prev"][0] is None
    assert isinstance(body["values"]["change_prev"][1], float)
    assert channels.to_json()["values"]["dead"] == [[False, False]] * 3


def test_an_unchanged_map_has_exactly_no_drift():
    x = np.random.default_rng(5).normal(size=(2, 9, 7, 4)).astype(np.float32)
    tracker = measures.Tracker()
    tracker.update("frozen", 0, x)
    _, fields = tracker.update("frozen", 1, x)
    assert (fields["cka_prev"], fields["cka_start"]) == (1.0, 1.0)
    _, moved = tracker.update("frozen", 2, x * np.float32(1.5) + 1)
    assert moved["cka_prev"] is not None and moved["cka_prev"] > 0.999


# -- the writer's blocks ---------------------------------------------------------------

BLOCK_CASES = [
    # (id, values per block, map shape): every way `passes.blocks` cuts a
    # map (test_passes.py checks the cuts themselves)
    ("several whole probes per block, the last one short", 200, (7, 4, 5, 3)),
    ("rows of one probe, the last block short", 50, (3, 6, 5, 4)),
    ("one row per block: more channels than a block holds", 8, (2, 3, 2, 10)),
    ("one block", 1 << 17, (2, 5, 4, 3)),
]


# How the means move between steps (the means at steps 0, 3 and 7): far
# beyond the spread (the products are made again with the map's own means),
# or within it (the products of the map centred by the previous means,
# corrected). And means within the spread: the references' products are
# made uncentred, and so are the map's own where the previous means were
# within theirs (corrected by the map's means); means that leave the spread
# after such a step (1 within 1, then 300 beyond 1.6: made again, centred).
MOVES = {
    "means jump": (1010.0, 4010.0, 8010.0),
    "means drift": (10.3, 11.2, 12.4),
    "means within the spread": (1.1, 1.4, 1.8),
    "means leave the spread": (1.0, 300.0, 1.5),
}
STEPS = (0, 3, 7)


@pytest.mark.parametrize("move", MOVES)
@pytest.mark.parametrize("shared", ["sums given", "one pass"])
@pytest.mark.parametrize(
    "values, shape", [c[1:] for c in BLOCK_CASES], ids=[c[0] for c in BLOCK_CASES]
)
def test_the_measures_match_numpy_however_the_blocks_cut_the_map(
    values, shape, shared, move, monkeypatch
):
    from tb_activations import health

    monkeypatch.setattr(passes, "_CHUNK_VALUES", values)
    monkeypatch.setattr(health, "_CHUNK_VALUES", values)
    # An offset far from 0 and a map that moves: the centred products must
    # not lose it, and every reference's difference is summed per probe.
    maps = {s: normal(shape, 40 + s) * (1 + 0.2 * s) + m for s, m in zip(STEPS, MOVES[move])}
    tracker = measures.Tracker()
    out = {}
    for s, x in maps.items():
        alone = health.measure_with_sums(x, "image")
        if shared == "sums given":
            out[s] = tracker.update("conv", s, x, alone[3])
        else:
            sums = health.set_sums(x, "image")
            out[s] = tracker.update("conv", s, x, sums)
            # The sums the tracker's pass made give health's values.
            got = health.measure_with_sums(x, "image", None, sums)
            for a, b in zip(got[:2], alone[:2]):
                np.testing.assert_allclose(a, b, rtol=1e-6)
            for key, want in alone[2].items():
                if isinstance(want, float):
                    assert got[2][key] == pytest.approx(want, rel=1e-6), key
                else:
                    assert got[2][key] == want, key
        # The sums health shares are the tracker's own.
        own = measures.Tracker().update("conv", s, x)[0]
        np.testing.assert_allclose(out[s][0][..., 0], own[..., 0], rtol=1e-6)
    x64 = {s: m.astype(np.float64) for s, m in maps.items()}
    for s, prev in ((3, 0), (7, 3)):
        extra, header = out[s]
        np.testing.assert_allclose(extra[..., 0], (x64[s] ** 2).sum(axis=(1, 2)), rtol=1e-6)
        np.testing.assert_allclose(
            extra[..., 1], ((x64[s] - x64[prev]) ** 2).sum(axis=(1, 2)), rtol=1e-5
        )
        np.testing.assert_allclose(
            extra[..., 2], ((x64[s] - x64[0]) ** 2).sum(axis=(1, 2)), rtol=1e-5
        )
        assert header["cka_prev"] == pytest.approx(cka_hkh(maps[s], maps[prev]), abs=1e-5)
        assert header["cka_start"] == pytest.approx(cka_hkh(maps[s], maps[0]), abs=1e-5)
