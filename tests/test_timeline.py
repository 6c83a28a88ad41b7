"""The channel timeline (frontend/timeline.js) in a real browser, on a real
TensorBoard, on a training run whose dead and dying channels are known
(`recorded.train_ground_truth`): conv2's DEAD_FROM_START channels are dead
at every step and its KILLED channels die exactly at `kill_step`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from browsing import TIMEOUT_MS, api, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = os.environ.get("TB_ACTIVATIONS_TIMELINE_SCREENSHOT") or str(
    REPO / "test-artifacts" / "timeline.png"
)
RUN = "activations"


@pytest.fixture(scope="module")
def server(ground_truth_server):
    return ground_truth_server


def open_layer(panel, layer="conv2", extra=""):
    panel.open(f"&run={RUN}&layer={layer}{extra}")
    wait_timeline(panel, layer)
    return panel


def wait_timeline(panel, layer, measure=None):
    sel = f'body[data-state=ready][data-timeline-rendered="{layer}"]'
    if measure:
        sel += f'[data-timeline-measure="{measure}"]'
    panel.ui.locator(sel).wait_for(state="attached", timeout=TIMEOUT_MS)


def cell_centre(panel, row, column):
    """Page coordinates of a timeline cell's centre, from the canvas's box and pixel size."""
    box = panel.ui.locator("#timeline-canvas").bounding_box()
    size = panel.canvas("#timeline-canvas")
    return (
        box["x"] + (column + 0.5) * box["width"] / size["w"],
        box["y"] + (row + 0.5) * box["height"] / size["h"],
    )


def dead(activation):
    """(channels,) True where every value over the probes is exactly 0."""
    a = np.asarray(activation)
    return np.all(a.reshape(-1, a.shape[-1]) == 0, axis=0)


# --------------------------------------------------------------------------


def test_the_logged_steps_are_the_recorded_states(server, ground_truth):
    # Every other check here compares the panel with `ground_truth.activations` step by step.
    steps = [s["step"] for s in api(server, "steps", run=RUN, tag="conv2")["steps"]]
    assert steps == ground_truth.steps
    assert ground_truth.kill_step in steps


def test_timeline_draws_every_channel_over_every_step(panel, server, ground_truth):
    open_layer(panel)
    pixels = panel.canvas("#timeline-canvas")
    assert (pixels["w"], pixels["h"]) == (len(ground_truth.steps), 16)
    assert pixels["variance"] > 10 and not pixels["gray"], pixels
    assert pixels["cssWidth"] > 300, "the heatmap is shown large, not at one pixel per cell"
    title = panel.ui.locator(".tl-title").text_content()
    assert f"16 channels × {len(ground_truth.steps)} steps" in title
    # The first column of a change since the previous step is undefined: light gray.
    first = panel.frame.evaluate(
        """() => {
            const c = document.querySelector('#timeline-canvas');
            return Array.from(c.getContext('2d').getImageData(0, 0, 1, c.height).data);
        }"""
    )
    assert set(first[0::4]) == {220}
    assert (
        panel.frame.evaluate("() => performance.getEntriesByName('activations:timeline').length")
        >= 1
    )


@pytest.mark.parametrize(
    "measure",
    [
        "change_prev",
        "change_start",
        "dead",
        "mean",
        "max",
        "zero_fraction",
        "on_rate",
        "dormant_score",
    ],
)
def test_each_measure_draws_its_own_picture(panel, measure):
    open_layer(panel)
    before = panel.canvas("#timeline-canvas")
    panel.ui.locator("#timeline-measure").select_option(measure)
    wait_timeline(panel, "conv2", measure)
    after = panel.canvas("#timeline-canvas")
    assert after["variance"] > 1, (measure, after)
    if measure != "change_prev":
        assert after["digest"] != before["digest"], measure


def test_dead_rows_match_the_activations(panel, ground_truth):
    open_layer(panel, extra="&tmeasure=dead")
    wait_timeline(panel, "conv2", "dead")
    cells = panel.frame.evaluate(
        """() => {
            const c = document.querySelector('#timeline-canvas');
            return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
        }"""
    )
    steps = len(ground_truth.steps)
    red = np.array(cells[0::4]).reshape(16, steps)
    expected = np.stack([dead(a) for a in ground_truth.activations["conv2"]], axis=1)
    # Dead cells are dark, live ones light.
    assert np.array_equal(red < 128, expected)


def test_deaths_are_marked_at_the_step_the_channels_died(panel, ground_truth):
    from recorded import DEAD_FROM_START, KILLED

    open_layer(panel)
    column = ground_truth.steps.index(ground_truth.kill_step)
    for c in KILLED:
        mark = panel.ui.locator(f'.tl-mark.died[data-channel="{c}"]')
        assert mark.count() >= 1
        assert str(ground_truth.kill_step) in mark.evaluate_all("ms => ms.map(m => m.dataset.step)")
        at = panel.ui.locator(
            f'.tl-mark.died[data-channel="{c}"][data-step="{ground_truth.kill_step}"]'
        ).bounding_box()
        x, y = cell_centre(panel, c, column)
        # The mark sits on the cell of that channel (row, by index) and step (column).
        assert abs(at["x"] + at["width"] / 2 - x) < 1.5, (c, at, x)
        assert abs(at["y"] + at["height"] / 2 - y) < 1.5, (c, at, y)
    for c in DEAD_FROM_START:
        # Dead at every step: never died, never revived.
        assert panel.ui.locator(f'.tl-mark[data-channel="{c}"]').count() == 0
    # Every mark is an event the activations show, and none is missing.
    marks = panel.ui.locator(".tl-mark[data-channel]").evaluate_all(
        "ms => ms.map(m => [+m.dataset.channel, m.dataset.kind, +m.dataset.step])"
    )
    d = np.stack([dead(a) for a in ground_truth.activations["conv2"]], axis=1)
    expected = sorted(
        [int(c), "died" if d[c, j + 1] else "revived", ground_truth.steps[j + 1]]
        for c, j in zip(*np.nonzero(d[:, 1:] != d[:, :-1]))
    )
    assert sorted(marks) == expected


def test_hover_reads_a_cell_and_click_opens_that_channel_at_that_step(panel, server, ground_truth):
    open_layer(panel, extra="&tmeasure=mean")
    wait_timeline(panel, "conv2", "mean")
    channel, column = 5, 1
    x, y = cell_centre(panel, channel, column)
    panel.page.mouse.move(x, y)
    readout = panel.ui.locator("#timeline-readout").text_content()
    assert readout.startswith(f"channel {channel}, step {ground_truth.steps[column]}: mean ")
    # The value is the mean over the probes of the channel's mean, to the readout's precision.
    expected = float(np.mean(ground_truth.activations["conv2"][column][..., channel]))
    shown = float(re.search(r": mean (\S+)", readout)[1])
    assert shown == pytest.approx(expected, rel=0.01, abs=1e-3)
    panel.page.mouse.click(x, y)
    panel.wait_ready(channel=str(channel), step=str(ground_truth.steps[column]))
    assert panel.ui.locator("#detail").is_visible()
    assert f"Channel {channel}" in panel.ui.locator(".detail-title").text_content()


def test_measure_survives_a_reload_and_the_timeline_collapses(panel):
    open_layer(panel)
    panel.ui.locator("#timeline-measure").select_option("max")
    wait_timeline(panel, "conv2", "max")
    panel.page.wait_for_function("() => location.hash.includes('tmeasure=max')")
    panel.page.reload()
    wait_timeline(panel, "conv2", "max")
    assert panel.ui.locator("#timeline-measure").input_value() == "max"
    panel.ui.locator(".tl-toggle").click()
    assert not panel.ui.locator(".tl-body").is_visible()
    panel.ui.locator(".tl-toggle").click()
    assert panel.ui.locator("#timeline-canvas").is_visible()


def test_screenshot_of_the_layer_view_with_its_timeline(panel, ground_truth):
    open_layer(panel)
    save_screenshot(panel, SCREENSHOT, ["#timeline-canvas"], full_page=True)
