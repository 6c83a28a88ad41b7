"""Sorting, filtering and diffing the grid (frontend/channel-order.js,
grid-bar.js, diff.js) in a real browser, on a real TensorBoard, on a
training run whose dead and dying channels are known
(`recorded.train_ground_truth`)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from browsing import TIMEOUT_MS, api, layer_levels

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN = "activations"
LAYER = "conv2"


@pytest.fixture(scope="module")
def server(ground_truth_server):
    return ground_truth_server


def open_layer(panel, extra=""):
    # A fresh page: a new hash on the same page would not reload the panel.
    panel.page.goto("about:blank")
    panel.open(f"&run={RUN}&layer={LAYER}{extra}")
    panel.ui.locator(f'body[data-state=ready][data-timeline-rendered="{LAYER}"]').wait_for(
        state="attached", timeout=TIMEOUT_MS
    )
    return panel


def wait_body(panel, **data):
    sel = "body[data-state=ready]" + "".join(f'[data-{k}="{v}"]' for k, v in data.items())
    panel.ui.locator(sel).wait_for(state="attached", timeout=TIMEOUT_MS)


def dead(activation):
    a = np.asarray(activation)
    return np.all(a.reshape(-1, a.shape[-1]) == 0, axis=0)


def change_prev(ground_truth, j):
    """change_prev of every conv2 channel at step index j, from the full-precision activations."""
    a = ground_truth.activations[LAYER][j]
    p = ground_truth.activations[LAYER][j - 1]
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    p = p.reshape(-1, p.shape[-1]).astype(np.float64)
    num = np.linalg.norm(a - p, axis=0)
    den = np.maximum(np.linalg.norm(a, axis=0), np.linalg.norm(p, axis=0))
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def timeline_row(server, measure):
    t = api(server, "timeline", run=RUN, tag=LAYER)
    row = np.frombuffer(base64.b64decode(t["rows"][measure]), "<f4")
    return row.reshape(t["channels"], len(t["steps"]))


def grid_channels(panel):
    return [
        int(c)
        for c in panel.ui.locator(".grid .tile").evaluate_all(
            "ts => ts.map(t => t.dataset.channel)"
        )
    ]


# --------------------------------------------------------------------------


def test_counts_sentence_matches_the_activations(panel, ground_truth):
    open_layer(panel)
    d = np.stack([dead(a) for a in ground_truth.activations[LAYER]], axis=1)
    last = ground_truth.steps[-1]
    now = int(d[:, -1].sum())
    never = int(d.all(axis=1).sum())
    died = int((~d[:, :-1] & d[:, 1:]).any(axis=1).sum())
    revived = int((d[:, :-1] & ~d[:, 1:]).any(axis=1).sum())
    text = panel.ui.locator("#grid-counts").text_content()
    expected = (
        f"{now} of 16 channels dead at step {last} ({round(100 * now / 16)}%); "
        f"{never} never active; {died} died after step {ground_truth.steps[0]}"
    )
    assert text.startswith(expected), (text, expected)
    assert (f"; {revived} revived" in text) == (revived > 0), text
    # The words are defined where they are read.
    assert "every probe" in panel.ui.locator("#grid-counts").get_attribute("title")


@pytest.mark.parametrize("sort", ["change_prev", "change_start", "mean", "max"])
def test_sort_reorders_the_tiles_by_the_measure_and_survives_a_reload(
    panel, server, ground_truth, sort
):
    open_layer(panel)
    before = panel.canvas(".grid canvas.atlas")
    row = timeline_row(server, sort)[:, -1]
    keys = np.where(np.isfinite(row), row, -np.inf)
    expected = sorted(range(16), key=lambda c: (-keys[c], c))
    panel.ui.locator("#grid-sort").select_option(sort)
    wait_body(panel, **{"grid-order": ",".join(map(str, expected))})
    assert grid_channels(panel) == expected, "every tile is still there, in that order"
    after = panel.canvas(".grid canvas.atlas")
    assert after["digest"] != before["digest"]
    # The tile that comes first is drawn first: top-left of the atlas.
    assert panel.ui.locator(f'.grid .tile[data-channel="{expected[0]}"]').evaluate(
        "t => [t.dataset.ax, t.dataset.ay]"
    ) == ["0", "0"]
    if sort == "change_prev":
        # The server's measure is the formula on the full-precision activations.
        last = len(ground_truth.steps) - 1
        np.testing.assert_allclose(row, change_prev(ground_truth, last), atol=0.02)
    panel.page.wait_for_function(f"() => location.hash.includes('sort={sort}')")
    panel.page.reload()
    wait_body(panel, **{"grid-order": ",".join(map(str, expected))})
    assert panel.ui.locator("#grid-sort").input_value() == sort


def test_filters_show_the_channels_the_activations_say(panel, ground_truth):
    from recorded import DEAD_FROM_START, KILLED

    d = np.stack([dead(a) for a in ground_truth.activations[LAYER]], axis=1)
    cases = {
        "dead": [int(c) for c in np.flatnonzero(d[:, -1])],
        "never": [int(c) for c in np.flatnonzero(d.all(axis=1))],
        "died": [int(c) for c in np.flatnonzero((~d[:, :-1] & d[:, 1:]).any(axis=1))],
    }
    assert set(DEAD_FROM_START) <= set(cases["never"])
    assert set(KILLED) <= set(cases["died"])
    open_layer(panel)
    full = panel.canvas(".grid canvas.atlas")
    for name, channels in cases.items():
        panel.ui.locator("#grid-filter").select_option(name)
        wait_body(panel, **{"grid-count": len(channels)})
        assert grid_channels(panel) == channels, name
        assert panel.canvas(".grid canvas.atlas")["digest"] != full["digest"], name
        assert panel.data("gridOrder") == ",".join(map(str, channels))
    panel.page.wait_for_function("() => location.hash.includes('filter=died')")
    panel.page.reload()
    wait_body(panel, **{"grid-count": len(cases["died"])})
    assert panel.ui.locator("#grid-filter").input_value() == "died"


def test_top_k_shows_the_channels_that_changed_most(panel, server, ground_truth):
    open_layer(panel)
    row = timeline_row(server, "change_prev")[:, -1]
    keys = np.where(np.isfinite(row), row, -np.inf)
    top = sorted(sorted(range(16), key=lambda c: (-keys[c], c))[:3])
    panel.ui.locator("#grid-filter").select_option("top")
    panel.ui.locator("#grid-top").fill("3")
    panel.ui.locator("#grid-top").dispatch_event("change")
    wait_body(panel, **{"grid-count": 3})
    assert grid_channels(panel) == top
    panel.page.wait_for_function("() => location.hash.includes('filter=top3')")
    # The timeline draws the same rows as the grid.
    assert panel.canvas("#timeline-canvas")["h"] == 3


def test_diff_shows_the_difference_in_real_units(panel, server, ground_truth):
    steps = ground_truth.steps
    open_layer(panel)
    live = [c for c in range(16) if not dead(ground_truth.activations[LAYER][-1])[c]]
    plain = {c: panel.tile(c) for c in live}
    panel.ui.locator("#grid-diff").select_option("prev")
    wait_body(panel, diff=steps[-2])
    changed = [c for c in live if panel.tile(c)["digest"] != plain[c]["digest"]]
    assert changed == live
    assert not panel.tile(live[0])["gray"], "a diverging colormap, not the gray ramp"
    legend = panel.ui.locator("#legend").text_content()
    assert f"step {steps[-1]} minus step {steps[-2]}" in legend and "±" in legend
    # The window is the largest |a_s - a_ref| over the layer, from the levels.
    now = api(server, "layer", run=RUN, tag=LAYER, step=steps[-1], probe=0)
    ref = api(server, "layer", run=RUN, tag=LAYER, step=steps[-2], probe=0)

    def values(layer):
        lv = layer_levels(layer).astype(np.float64)
        st = np.array([r[:2] for r in layer["stats"]], np.float64)
        return st[:, :1, None] + lv / 255 * (st[:, 1:2, None] - st[:, :1, None])

    diff = values(now) - values(ref)
    m = np.abs(diff).max()
    assert re.search(r"window ±(\S+),", legend)[1] == f"{float(f'{m:.3g}'):g}"
    # The opened channel reads the difference at the hovered pixel.
    c = live[0]
    panel.ui.locator(f'.grid .tile[data-channel="{c}"]').click()
    panel.wait_ready(channel=str(c))
    box = panel.ui.locator("#detail canvas.big").bounding_box()
    h, w = diff.shape[1:]
    px, py = w // 2, h // 2
    panel.page.mouse.move(
        box["x"] + (px + 0.5) * box["width"] / w, box["y"] + (py + 0.5) * box["height"] / h
    )
    readout = panel.ui.locator("#readout").text_content()
    got = re.search(r"difference (\S+) \(step", readout)
    assert got, readout
    assert float(got[1]) == pytest.approx(diff[c, py, px], rel=0.01, abs=1e-3)
    panel.page.wait_for_function("() => location.hash.includes('diff=prev')")
    panel.page.reload()
    wait_body(panel, diff=steps[-2])
    assert panel.ui.locator("#grid-diff").input_value() == "prev"


def test_diff_at_the_first_step_or_a_missing_step_says_so(panel, ground_truth):
    first = ground_truth.steps[0]
    open_layer(panel, f"&step={first}&diff=prev")
    wait_body(panel, diff="none")
    note = panel.ui.locator("#grid-note").text_content()
    assert f"step {first} is the first kept step" in note
    open_layer(panel, "&diff=99999")
    wait_body(panel, diff="none")
    assert "step 99999 is not among the kept steps" in panel.ui.locator("#grid-note").text_content()
    open_layer(panel, f"&diff={first}")
    wait_body(panel, diff=first)


TAU = 0.025  # the overview's `tau`, the server's default


def dormant_scores(ground_truth, j):
    """Every conv2 channel's dormant score at step index j (docs/measures.md)."""
    a = np.abs(ground_truth.activations[LAYER][j].astype(np.float64))
    m = a.reshape(-1, a.shape[-1]).mean(axis=0)
    return m / m.mean()


def test_dormant_filters_and_their_counts_match_the_activations(panel, server, ground_truth):
    assert api(server, "overview", run=RUN)["tau"] == TAU
    steps = ground_truth.steps
    scores = np.stack([dormant_scores(ground_truth, j) for j in range(len(steps))], axis=1)
    np.testing.assert_allclose(timeline_row(server, "dormant_score"), scores, rtol=0.02, atol=1e-6)
    dormant = scores <= TAU
    now = np.flatnonzero(dormant[:, -1]).tolist()
    became = [c for c in now if not dormant[c, 0]]
    since = {c: steps[max(j for j in range(len(steps)) if not dormant[c, j]) + 1] for c in became}
    # The truth by construction: the killed channels became dormant when they died.
    assert since[3] == since[7] == ground_truth.kill_step and len(now) > len(became)

    open_layer(panel, "&filter=dormant")
    wait_body(panel, **{"grid-count": len(now)})
    assert grid_channels(panel) == now
    text = panel.ui.locator("#grid-counts").text_content()
    expected = (
        f"{len(now)} of 16 channels dormant at step {steps[-1]} ({round(100 * len(now) / 16)}%); "
        f"{len(became)} became dormant after step {steps[0]} "
        f"(the last at step {max(since.values())})."
    )
    assert text.endswith(expected), (text, expected)
    assert "τ = 0.025" in panel.ui.locator("#grid-counts").get_attribute("title")

    open_layer(panel, "&filter=became")
    wait_body(panel, **{"grid-count": len(became)})
    assert grid_channels(panel) == became
    # At a step before any of them became dormant, none has.
    before = steps[steps.index(min(since.values())) - 1]
    open_layer(panel, f"&filter=became&step={before}")
    text = panel.ui.locator("#grid-counts").text_content()
    assert f"dormant at step {before}" in text and "; 0 became dormant after" in text
    assert grid_channels(panel) == []


def test_sorting_by_dormant_score_puts_the_lowest_first(panel, ground_truth):
    scores = dormant_scores(ground_truth, len(ground_truth.steps) - 1)
    open_layer(panel, "&sort=dormant_score")
    wait_body(panel, **{"grid-count": 16})
    order = grid_channels(panel)
    ranked = scores[order]
    # Lowest first; ties (the dead channels, all 0) by index.
    assert all(a <= b + 1e-6 * max(1.0, b) for a, b in zip(ranked, ranked[1:]))
    zeros = np.flatnonzero(scores == 0).tolist()
    assert zeros and order[: len(zeros)] == zeros
