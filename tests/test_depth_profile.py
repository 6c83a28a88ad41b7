"""The training map's health measures (map-measures.js, map-marks.js) and
the depth profile under it (depth-profile.js, depth-view.js), in a real
browser on a real TensorBoard.

The log is test_health's training, whose truth is known by construction:
`conv` has a dead and a dormant channel (so half its units are dormant),
`tanh` saturates after SATURATE_EPOCH, and `blowup` turns non-finite at the
end of BLOWUP_EPOCH (the NaN loss then reaches `tanh` one epoch later).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from test_health import (
    BLOWUP_EPOCH,
    LAYERS,
    SATURATE_EPOCH,
    fit_health,
    health_data,
    health_model,
)
from test_training_map import cell_colors

from browsing import TIMEOUT_MS, api, save_screenshot, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("TB_ACTIVATIONS_SCREENSHOTS") or REPO / "test-artifacts")
RUN = "activations"
MAP = "#training-map"
HEAT = f"{MAP} canvas.map-heat"
DEPTH = "#depth-profile"
STEPS_PER_EPOCH = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("keras")
    root = tmp_path_factory.mktemp("health_panel")
    fit_health(health_model(), *health_data(), root)
    with serving(root, lambda tags: set(LAYERS) <= set(tags.get(RUN, {}))) as url:
        yield url


@pytest.fixture(scope="module")
def overview(server):
    return api(server, "overview", run=RUN)


def open_map(panel, measure, step=None):
    extra = f"&step={step}" if step is not None else ""
    panel.open(f"&run={RUN}&view=map&measure={measure}{extra}")
    sel = f'body[data-state=ready][data-map-rendered="{RUN}"][data-map-measure="{measure}"]'
    panel.ui.locator(sel).wait_for(state="attached", timeout=TIMEOUT_MS)


def wait_depth(panel, measure, step):
    sel = f'body[data-depth-rendered="{RUN}"][data-depth-measure="{measure}"]'
    sel += f'[data-depth-step="{step}"]'
    panel.ui.locator(sel).wait_for(state="attached", timeout=TIMEOUT_MS)


def hover_cell(panel, overview, layer, step):
    box = panel.ui.locator(HEAT).bounding_box()
    r, c = overview["layers"].index(layer), overview["steps"].index(step)
    panel.page.mouse.move(
        box["x"] + (c + 0.5) * box["width"] / len(overview["steps"]),
        box["y"] + (r + 0.5) * box["height"] / len(overview["layers"]),
    )
    return panel.ui.locator(f"{MAP} .map-readout").text_content()


def level(t):
    """The colormap entry of a value at `t` of its scale's span."""
    return round(min(1.0, max(0.0, t)) * 255)


# -- the training map's health measures --------------------------------------------


def test_the_construction_is_what_the_overview_says(overview):
    assert overview["layers"] == list(LAYERS)
    assert overview["first_nonfinite"] == {
        "blowup": (BLOWUP_EPOCH + 1) * STEPS_PER_EPOCH,
        "tanh": (BLOWUP_EPOCH + 2) * STEPS_PER_EPOCH,
    }
    assert overview["rows"]["dormant_fraction"][0][0] == 0.5  # 2 of conv's 4 units


@pytest.mark.parametrize(
    "measure, cmap, scaled",
    [
        ("dormant_fraction", "magma", lambda v, layer, o: v),
        ("saturation", "magma", lambda v, layer, o: v),
        ("effective_rank", "viridis", lambda v, layer, o: v / o["effective_rank_max"][layer]),
        ("similarity", "coolwarm", lambda v, layer, o: (v + 1) / 2),
    ],
)
def test_each_health_measure_colours_the_overviews_values(
    panel, server, overview, measure, cmap, scaled
):
    lut = api(server, "colormaps")[cmap]
    open_map(panel, measure)
    colors = cell_colors(panel)
    rows = overview["rows"][measure]
    drawn = 0
    for r, layer in enumerate(overview["layers"]):
        for c, v in enumerate(rows[r]):
            if v is None:
                assert colors[r][c] != list(lut[level(0)]) or measure == "similarity"
                continue
            assert colors[r][c] == list(lut[level(scaled(v, layer, overview))]), (layer, c)
            drawn += 1
    assert drawn >= len(overview["steps"]) - 1  # saturation: tanh alone, until it broke


def test_rms_is_coloured_as_its_log(panel, server, overview):
    lut = api(server, "colormaps")["viridis"]
    open_map(panel, "rms")
    colors = cell_colors(panel)
    logs = [math.log10(v) for row in overview["rows"]["rms"] for v in row if v]
    lo, hi = math.floor(min(logs)), math.ceil(max(logs))
    hi = max(hi, lo + 1)
    for r, row in enumerate(overview["rows"]["rms"]):
        for c, v in enumerate(row):
            if v:
                assert colors[r][c] == list(lut[level((math.log10(v) - lo) / (hi - lo))])


def test_the_hover_says_what_the_value_means(panel, overview):
    open_map(panel, "effective_rank")
    rank = overview["rows"]["effective_rank"][1][0]
    most = overview["effective_rank_max"]["tanh"]
    text = hover_cell(panel, overview, "tanh", overview["steps"][0])
    assert f"effective rank {round(rank, 1):g} of at most {most}" in text
    open_map(panel, "dormant_fraction")
    text = hover_cell(panel, overview, "conv", overview["steps"][0])
    assert (
        "dormant units: 50% of the layer's units carry at most 2.5% of an average unit's activity"
        in text
    )
    open_map(panel, "saturation")
    text = hover_cell(panel, overview, "conv", overview["steps"][0])
    assert "not applicable: the layer's activation is not tanh or sigmoid" in text
    after = (SATURATE_EPOCH + 1) * STEPS_PER_EPOCH
    value = overview["rows"]["saturation"][1][overview["steps"].index(after)]
    assert f"saturation {round(value * 100, 1):g}%" in hover_cell(panel, overview, "tanh", after)


@pytest.mark.parametrize("measure", ["change_prev", "mean", "rms"])
def test_non_finite_cells_are_marked_and_the_first_flagged_in_every_measure(
    panel, overview, measure
):
    open_map(panel, measure)
    first = overview["first_nonfinite"]
    flags = panel.ui.locator(f"{MAP} .map-nf-first")
    assert sorted(
        (flags.nth(i).get_attribute("data-layer"), int(flags.nth(i).get_attribute("data-step")))
        for i in range(flags.count())
    ) == sorted(first.items())
    # blowup is non-finite from its first broken step to the end: one bar.
    bars = panel.ui.locator(f'{MAP} .map-nf[data-layer="blowup"]')
    assert bars.count() == 1 and int(bars.get_attribute("data-step")) == first["blowup"]
    last = overview["steps"][-1]
    assert f"steps {first['blowup']} to {last}" in bars.get_attribute("title")
    # The flag sits on its cell.
    heat = panel.ui.locator(HEAT).bounding_box()
    flag = panel.ui.locator(f'{MAP} .map-nf-first[data-layer="blowup"]').bounding_box()
    c = overview["steps"].index(first["blowup"])
    n = len(overview["steps"])
    assert abs(flag["x"] - (heat["x"] + c * heat["width"] / n)) < 2
    assert abs(flag["y"] - (heat["y"] + heat["height"] / 3 * 2)) < 2
    note = panel.ui.locator(f"{MAP} .map-broke").text_content()
    assert note == (
        f"Non-finite values (NaN or infinity) first at step {first['blowup']} in blowup, "
        f"step {first['tanh']} in tanh."
    )
    assert "not finite" not in note
    text = hover_cell(panel, overview, "blowup", first["blowup"])
    assert "non-finite values (NaN or infinity) at this step" in text
    assert "(the layer's first)" in text
    assert panel.ui.locator(f'{MAP} .map-nf[data-layer="conv"]').count() == 0


# -- the depth profile ----------------------------------------------------------------


def points(panel):
    dots = panel.ui.locator(f"{DEPTH} circle.depth-point")
    return {
        dots.nth(i).get_attribute("data-layer"): float(dots.nth(i).get_attribute("data-value"))
        for i in range(dots.count())
    }


@pytest.mark.parametrize("measure", ["rms", "effective_rank", "dormant_fraction", "similarity"])
def test_depth_profile_points_are_the_overview_values_at_the_step(panel, overview, measure):
    step = overview["steps"][2]
    open_map(panel, measure, step)
    wait_depth(panel, measure, step)
    c = overview["steps"].index(step)
    expected = {
        layer: overview["rows"][measure][r][c]
        for r, layer in enumerate(overview["layers"])
        if overview["rows"][measure][r][c] is not None
    }
    got = points(panel)
    assert got.keys() == expected.keys() and len(got) == len(LAYERS)
    for layer, v in expected.items():
        assert got[layer] == pytest.approx(v, rel=1e-6)
    # A larger value is drawn higher (rms on its log scale).
    dots = panel.ui.locator(f"{DEPTH} circle.depth-point")
    cy = {
        dots.nth(i).get_attribute("data-layer"): float(dots.nth(i).get_attribute("cy"))
        for i in range(3)
    }
    for a in got:
        for b in got:
            if got[a] > got[b]:
                assert cy[a] < cy[b], (a, b)
    assert panel.ui.locator(f"{DEPTH} path.depth-reference").count() == 1
    title = panel.ui.locator(f"{DEPTH} .depth-title").text_content()
    assert f"at step {step}" in title and f"the first step, {overview['steps'][0]}" in title


def test_depth_profile_follows_the_step_and_marks_a_broken_layer(panel, overview):
    broke = overview["first_nonfinite"]["blowup"]
    open_map(panel, "rms", broke)
    wait_depth(panel, "rms", broke)
    assert set(points(panel)) == {"conv", "tanh"}
    cross = panel.ui.locator(f"{DEPTH} .depth-broken")
    assert cross.count() == 1 and cross.get_attribute("data-layer") == "blowup"
    # A step typed under the slider: the profile follows.
    panel.ui.locator("#step-input").fill(str(overview["steps"][0]))
    panel.ui.locator("#step-input").press("Enter")
    wait_depth(panel, "rms", overview["steps"][0])
    assert set(points(panel)) == set(LAYERS)
    assert panel.ui.locator(f"{DEPTH} path.depth-reference").count() == 0


def test_screenshots_of_the_map_with_health_measures_and_of_the_depth_profile(panel, overview):
    panel.page.set_viewport_size({"width": 1200, "height": 900})
    step = overview["steps"][-1]
    open_map(panel, "rms", step)
    wait_depth(panel, "rms", step)
    save_screenshot(panel, SHOTS / "map-health.png", [HEAT, f"{DEPTH} svg"])
    open_map(panel, "effective_rank", overview["steps"][2])
    wait_depth(panel, "effective_rank", overview["steps"][2])
    panel.ui.locator(DEPTH).scroll_into_view_if_needed()
    save_screenshot(panel, SHOTS / "depth-profile.png", [f"{DEPTH} svg"])
