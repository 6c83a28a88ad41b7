"""The overlay on the probe (frontend/overlay.js) and the download links
(frontend/downloads.js) in a real browser, on a real TensorBoard, on a real
training run with two probes (`recorded.train_ground_truth`)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browsing import TIMEOUT_MS, api, layer_levels, save_screenshot, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = os.environ.get("TB_ACTIVATIONS_OVERLAY_SCREENSHOT") or str(
    REPO / "test-artifacts" / "overlay.png"
)
RUN = "activations"
LAYER = "conv1"  # 8 channels of 26 x 26 over 28 x 28 probes


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    pytest.importorskip("keras")
    from recorded import train_ground_truth

    return train_ground_truth(tmp_path_factory.mktemp("overlay_logs"), epochs=2)


@pytest.fixture(scope="module")
def server(truth):
    with serving(truth.log_dir, lambda tags: "dense1" in tags.get(RUN, {})) as url:
        yield url


def open_layer(panel, layer=LAYER, extra=""):
    # A fresh page: a new hash on the same page would not reload the panel.
    panel.page.goto("about:blank")
    panel.open(f"&run={RUN}&layer={layer}{extra}")
    panel.wait_ready(layer=layer)
    return panel


def wait_body(panel, **data):
    sel = "body[data-state=ready]" + "".join(f'[data-{k}="{v}"]' for k, v in data.items())
    panel.ui.locator(sel).wait_for(state="attached", timeout=TIMEOUT_MS)


def rgb(panel, selector: str, channel: int | None = None) -> np.ndarray:
    """A canvas's pixels, or one tile's of the grid's atlas, as (h, w, 3)."""
    got = panel.frame.evaluate(
        """([sel, tile]) => {
            const c = document.querySelector(sel);
            let [x, y, w, h] = [0, 0, c.width, c.height];
            if (tile !== null) {
                const t = document.querySelector(`.grid .tile[data-channel="${tile}"]`).dataset;
                [x, y, w, h] = [+t.ax, +t.ay, +t.w, +t.h];
            }
            return {w, h, data: Array.from(c.getContext("2d").getImageData(x, y, w, h).data)};
        }""",
        [selector, channel],
    )
    return np.array(got["data"], np.int64).reshape(got["h"], got["w"], 4)[..., :3]


def tile(panel, channel: int) -> np.ndarray:
    return rgb(panel, ".grid canvas.atlas", channel)


def probe_rgb(server, probe: int) -> np.ndarray:
    image = Image.open(io.BytesIO(api(server, "probe", run=RUN, probe=probe))).convert("RGB")
    return np.asarray(image, np.int64)


def colours(server, layer: str, step: int, probe: int, channel: int, size) -> np.ndarray:
    """Channel `channel` at the per-channel scale in viridis, resized to `size`
    (h, w) by nearest neighbour: the colour under each probe pixel."""
    levels = layer_levels(api(server, "layer", run=RUN, tag=layer, step=step, probe=probe))
    lut = np.array(api(server, "colormaps")["viridis"], np.int64)
    h, w = levels.shape[1:]
    ys = np.minimum(h - 1, ((np.arange(size[0]) + 0.5) * h / size[0]).astype(int))
    xs = np.minimum(w - 1, ((np.arange(size[1]) + 0.5) * w / size[1]).astype(int))
    return lut[levels[channel][ys][:, xs]]


def blended(fg: np.ndarray, bg: np.ndarray, opacity: float) -> np.ndarray:
    a = round(opacity * 256)
    return (fg * a + bg * (256 - a)) >> 8


# --------------------------------------------------------------------------


@pytest.mark.parametrize("probe", [0, 1])
def test_each_tile_is_its_channel_blended_over_its_own_probe(panel, server, truth, probe):
    step = truth.steps[-1]
    open_layer(panel, extra=f"&probe={probe}&overlay=0.6&overlay_resize=nearest")
    wait_body(panel, overlay="0.6")
    under = probe_rgb(server, probe)
    other = probe_rgb(server, 1 - probe)
    assert np.abs(under - other).mean() > 20, "the two probes differ"
    for c in (0, 5):
        got = tile(panel, c)
        assert got.shape == under.shape, "a tile has the probe's pixels"
        expected = blended(colours(server, LAYER, step, probe, c, under.shape[:2]), under, 0.6)
        assert np.abs(got - expected).max() <= 2, c
        # Against the other probe's image, it is far off.
        wrong = blended(colours(server, LAYER, step, probe, c, under.shape[:2]), other, 0.6)
        assert np.abs(got - wrong).mean() > 5


def test_toggle_and_opacity_move_the_pixels_from_the_probe_to_the_colormap(panel, server, truth):
    open_layer(panel, extra="&overlay_resize=nearest")
    plain = tile(panel, 2)
    assert panel.data("overlay") == ""
    under = probe_rgb(server, 0)
    pure = colours(server, LAYER, truth.steps[-1], 0, 2, under.shape[:2])
    panel.ui.locator("#overlay-toggle").check()
    wait_body(panel, overlay="0.6")
    assert tile(panel, 2).shape != plain.shape or not np.array_equal(tile(panel, 2), plain)
    distances = []
    for opacity in ("0.1", "0.5", "1"):
        panel.ui.locator("#overlay-opacity").fill(opacity)
        wait_body(panel, overlay=opacity)
        got = tile(panel, 2)
        distances.append((np.abs(got - under).mean(), np.abs(got - pure).mean()))
    to_probe, to_colours = zip(*distances)
    assert to_probe[0] < to_probe[1] < to_probe[2]
    assert to_colours[0] > to_colours[1] > to_colours[2]
    assert to_colours[2] <= 1, "at full opacity a tile is the colormap's colours"
    measures = panel.frame.evaluate(
        "() => performance.getEntriesByName('activations:overlay').length"
    )
    assert measures >= 4
    panel.ui.locator("#overlay-toggle").uncheck()
    wait_body(panel, overlay="")
    assert np.array_equal(tile(panel, 2), plain)


def test_overlay_survives_a_reload(panel):
    open_layer(panel)
    panel.ui.locator("#overlay-toggle").check()
    panel.ui.locator("#overlay-opacity").fill("0.35")
    panel.ui.locator("#overlay-resize").select_option("nearest")
    wait_body(panel, overlay="0.35")
    panel.page.wait_for_function(
        "() => ['overlay=0.35', 'overlay_resize=nearest'].every((k) => location.hash.includes(k))"
    )
    before = tile(panel, 1)
    panel.page.reload()
    wait_body(panel, overlay="0.35")
    assert panel.ui.locator("#overlay-toggle").is_checked()
    assert panel.ui.locator("#overlay-opacity").input_value() == "0.35"
    assert panel.ui.locator("#overlay-resize").input_value() == "nearest"
    assert np.array_equal(tile(panel, 1), before)


def test_smooth_resizing_interpolates_the_map(panel):
    open_layer(panel, extra="&overlay=1&overlay_resize=nearest")
    wait_body(panel, overlay="1")
    nearest = tile(panel, 3)
    panel.ui.locator("#overlay-resize").select_option("smooth")
    panel.page.wait_for_function("() => !location.hash.includes('overlay_resize')")
    smooth = tile(panel, 3)
    assert not np.array_equal(nearest, smooth)
    # Interpolated colours change less from one pixel to the next.
    step = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert step(smooth) < step(nearest)


def test_the_opened_channel_is_overlaid_as_its_tile(panel, server):
    open_layer(panel, extra="&overlay=0.6&overlay_resize=nearest")
    wait_body(panel, overlay="0.6")
    panel.ui.locator('.grid .tile[data-channel="4"]').click()
    panel.wait_ready(channel="4")
    big = panel.ui.locator("#detail canvas.overlay-big")
    assert big.is_visible()
    np.testing.assert_array_equal(rgb(panel, "#detail canvas.overlay-big"), tile(panel, 4))
    # It covers the zoomed image exactly, and the readout under it still reads values.
    a = big.bounding_box()
    b = panel.ui.locator("#detail canvas.big").bounding_box()
    assert all(abs(a[k] - b[k]) < 1 for k in ("x", "y", "width", "height"))
    panel.page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
    assert re.match(r"x 1[23], y 1[23]: ", panel.ui.locator("#readout").text_content())
    panel.ui.locator("#overlay-toggle").uncheck()
    wait_body(panel, overlay="")
    assert not big.is_visible()


def test_a_units_layer_says_overlay_does_not_apply(panel):
    open_layer(panel, layer="dense1", extra="&overlay=0.6")
    wait_body(panel, overlay="none")
    note = panel.ui.locator("#overlay-note").text_content()
    assert "does not apply to dense1" in note and "units" in note
    assert (
        panel.ui.locator(".grid canvas.atlas").count() == 0
        or not panel.ui.locator(".grid canvas.atlas").is_visible()
    )


def test_in_diff_mode_the_overlay_blends_the_difference(panel, truth):
    # conv2 trains (conv1 is frozen: its difference is 0 everywhere).
    open_layer(panel, layer="conv2", extra="&overlay=1&overlay_resize=nearest")
    wait_body(panel, overlay="1")
    a = truth.activations["conv2"]
    c = int(np.abs(a[-1][0] - a[-2][0]).max(axis=(0, 1)).argmax())
    plain = tile(panel, c)
    panel.ui.locator("#grid-diff").select_option("prev")
    wait_body(panel, diff=truth.steps[-2], overlay="1")
    diff = tile(panel, c)
    assert not np.array_equal(diff, plain)
    # coolwarm, not viridis: red or blue away from its gray centre.
    assert (np.abs(diff[..., 0] - diff[..., 2]) > 40).any()


@pytest.mark.parametrize("cmap", ["viridis", "magma"])
def test_download_links_answer_the_files_they_name(panel, server, truth, cmap):
    from support import fetch

    open_layer(panel, layer="conv2", extra=f"&probe=1&cmap={cmap}&norm=layer")
    panel.ui.locator('.grid .tile[data-channel="5"]').click()
    panel.wait_ready(channel="5")
    step = truth.steps[-1]
    cases = [
        ("#download-grid", "image/png", f"activations-conv2-step{step}-p1.png", f"step={step}"),
        ("#download-gif", "image/gif", "activations-conv2-c5-p1.gif", "channel=5"),
        ("#download-apng", "image/apng", "activations-conv2-c5-p1.png", "channel=5"),
    ]
    for selector, media_type, name, key in cases:
        link = panel.ui.locator(selector)
        assert link.is_visible()
        assert link.get_attribute("download") == ""
        href = link.get_attribute("href")
        assert href.startswith("export?"), "a relative URL"
        for part in (key, f"cmap={cmap}", "norm=layer", "probe=1", "tag=conv2"):
            assert part in href, (part, href)
        # Resolved as the browser does, against the plugin's <base>.
        url = link.evaluate("a => a.href")
        assert url.startswith(server) and "/data/plugin/activations/export?" in url
        r = fetch(url)
        assert r.status == 200, r.text
        assert r.content_type == media_type
        assert r.headers["content-disposition"] == f'attachment; filename="{name}"'
        image = Image.open(io.BytesIO(r.body))
        if media_type != "image/png":
            assert image.n_frames == len(truth.steps)


def test_screenshot_of_the_overlay(panel):
    open_layer(panel, extra="&overlay=0.6")
    wait_body(panel, overlay="0.6")
    panel.ui.locator('.grid .tile[data-channel="2"]').click()
    panel.wait_ready(channel="2")
    drawn = [".grid canvas.atlas", "#detail canvas.overlay-big"]
    save_screenshot(panel, SCREENSHOT, drawn, full_page=True)
