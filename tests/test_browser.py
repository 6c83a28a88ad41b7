"""The Activations tab in a real browser, on a real TensorBoard, on real logs.

Small Keras models are trained with `ActivationLogger`; a `tensorboard`
process serves their log directory; headless Chromium (through Playwright)
opens TensorBoard's page and drives the panel inside its iframe with real
clicks and keys. Images are checked by their pixels.

Run and layer names here are HTML on purpose: the panel must show them as
text, and no script in them may ever run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from browsing import (
    CHROMIUM_GRAY_JS,
    TIMEOUT_MS,
    Panel,
    api,
    layer_levels,
    save_screenshot,
    serving,
    tiles_against_logged,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
# The README's pictures, of the demo's own log; docs/ holds the copies.
SCREENSHOTS = Path(
    os.environ.get("TB_ACTIVATIONS_SCREENSHOTS") or REPO / "test-artifacts" / "readme"
)

HTML_LAYER = "<img src=x onerror=alert(1)>"
HTML_RUN = "<svg onload=alert(2)>"
SEQ_RUN = "sequence"
CNN_RUN = "stripes_cnn"
DEMO_RUN = "demo/activations"
LIVE_RUN = "live"


# --------------------------------------------------------------------------
# Logs: real models, trained for a few epochs on data made here.


def image_models():
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    # TensorFlow refuses this name as a graph scope: the model trains eagerly.
    x = keras.layers.Conv2D(12, 3, activation="relu", name=HTML_LAYER)(x)
    # A branch that is exactly zero everywhere, to show all-zero channels.
    dead = keras.layers.Conv2D(
        4, 1, kernel_initializer="zeros", bias_initializer="zeros", trainable=False, name="zeros"
    )(x)
    x = keras.layers.Concatenate(name="concat")([x, dead])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(20, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs, name="cnn")
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    return model


def stripes_cnn():
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(24, 3, activation="relu", padding="same", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs, name="stripes_cnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def sequence_model():
    import keras

    inputs = keras.Input((48, 2))
    x = keras.layers.Conv1D(10, 5, activation="relu", padding="same", name="conv1d")(inputs)
    x = keras.layers.GlobalAveragePooling1D(name="gap1d")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs, name="seq")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def waves(n=64, length=48, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    y = rng.integers(0, 2, n)
    period = np.where(y == 1, 6.0, 16.0)[:, None]
    x = np.stack(
        [
            np.sin(2 * np.pi * t / period + rng.uniform(0, 6, (n, 1))),
            rng.normal(0, 0.3, (n, length)),
        ],
        axis=-1,
    ).astype(np.float32)
    return x, y.astype("int32")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    keras = pytest.importorskip("keras")
    from tb_activations import ActivationLogger

    from recorded import stripes

    keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("browser_logs")
    x, y = stripes(n=64)
    probes = x[:2]
    model = image_models()
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[
            ActivationLogger(root, probes, layers="all", run_name=HTML_RUN, batch_freq=2, verbose=0)
        ],
    )
    # A plain CNN, one probe of each class.
    xc, yc = stripes(n=192, seed=1)
    cnn_probes = xc[[int(np.argmax(yc == k)) for k in range(3)]]
    stripes_cnn().fit(
        xc,
        yc,
        batch_size=16,
        epochs=4,
        verbose=0,
        callbacks=[
            # Keras's own runs beside ours: TensorBoard then has other tabs.
            keras.callbacks.TensorBoard(root, histogram_freq=0, write_graph=False),
            ActivationLogger(
                root, cnn_probes, layers="all", run_name=CNN_RUN, batch_freq=3, verbose=0
            ),
        ],
    )
    xs, ys = waves()
    sequence_model().fit(
        xs,
        ys,
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[ActivationLogger(root, xs[:1], layers="all", run_name=SEQ_RUN, verbose=0)],
    )
    # The README's picture: the demo's own log, from its fast mode.
    subprocess.run(
        [sys.executable, str(REPO / "demo" / "train.py"), "--fast", "--no-tensorboard"]
        + ["--logdir", str(root / "demo")],
        check=True,
        timeout=600,
        capture_output=True,
    )
    # A run that keeps training while the page is open (see the live test).
    live = sequence_model()
    live_logger = ActivationLogger(root, xs[:1], layers=["conv1d"], run_name=LIVE_RUN, verbose=0)
    live.fit(xs, ys, batch_size=16, epochs=1, verbose=0, callbacks=[live_logger])
    return {"root": root, "live": (live, live_logger, xs, ys)}


@pytest.fixture(scope="module")
def server(logdir):
    with serving(
        logdir["root"], lambda tags: {HTML_RUN, SEQ_RUN} <= set(tags), "--reload_interval=1"
    ) as url:
        yield url


def tags(server, run):
    return api(server, "tags")[run]


def steps_of(server, run, tag):
    return [s["step"] for s in api(server, "steps", run=run, tag=tag)["steps"]]


# --------------------------------------------------------------------------
# Tests.


def test_layers_are_listed_in_the_models_order(panel):
    panel.open()
    panel.pick_run(CNN_RUN)
    names = panel.ui.locator("#layers .layer-name").all_text_contents()
    assert names == ["conv1", "pool1", "conv2", "pool2", "flatten", "dense", "logits"]


def test_grid_shows_every_channel_with_real_pixels(panel, server):
    panel.open()
    panel.pick_run(HTML_RUN)
    panel.pick_layer("conv1")
    info = tags(server, HTML_RUN)["conv1"]
    tiles = panel.ui.locator(".grid .tile")
    assert tiles.count() == info["channels"] == 16
    assert tiles.locator(".tile-label").all_text_contents() == [str(c) for c in range(16)]
    pixels = [panel.tile(c) for c in range(16)]
    assert all(p["w"] == 28 and p["h"] == 28 for p in pixels)
    assert sum(p["variance"] > 1 for p in pixels) >= 8, pixels
    # The latest step is shown, with its epoch.
    steps = steps_of(server, HTML_RUN, "conv1")
    assert panel.data("renderedStep") == str(steps[-1])
    assert panel.ui.locator("#epoch").text_content().startswith("epoch 3")
    # The probe the activations come from, beside the grid: one per probe.
    probes = panel.ui.locator("#probes .probe img")
    assert probes.count() == 2
    panel.page.wait_for_function(
        "() => [...document.querySelector('iframe').contentDocument"
        ".querySelectorAll('#probes img')].every(i => i.complete && i.naturalWidth === 28)"
    )


def test_html_names_are_literal_text_and_never_run(panel):
    panel.open()
    panel.pick_run(HTML_RUN)
    assert panel.ui.locator("#run option", has_text=HTML_RUN).count() == 1
    names = panel.ui.locator("#layers .layer-name").all_text_contents()
    assert HTML_LAYER in names
    assert "__probe__" not in names
    # The filter box narrows the list, by name or by class.
    panel.ui.locator("#layer-filter").fill("onerror")
    assert panel.ui.locator("#layers .layer-name").all_text_contents() == [HTML_LAYER]
    panel.ui.locator("#layer-filter").fill("dense")
    assert panel.ui.locator("#layers .layer-name").all_text_contents() == ["dense1", "logits"]
    panel.ui.locator("#layer-filter").fill("")
    panel.pick_layer(HTML_LAYER)
    assert panel.ui.locator(".layer-heading").text_content() == HTML_LAYER
    panel.ui.locator(".grid .tile").nth(1).click()
    panel.wait_ready(channel="1")
    assert HTML_LAYER in panel.ui.locator(".detail-title").text_content()
    # The names went into the panel's own document, so that is where markup
    # made from them would be: no element came from a name, no handler was set
    # (the depth profile's own chart is the panel's one svg).
    injected = panel.frame.evaluate(
        """() => document.querySelectorAll(
            'img[src=x], img[src$="/x"], svg:not(#depth-profile > .depth-plot > svg.depth-svg),'
            + ' #depth-profile svg svg, [onerror], [onload]').length"""
    )
    assert injected == 0


def test_channel_opens_large_with_value_readout_colorbar_and_evolution(panel, server):
    panel.open()
    panel.pick_run(HTML_RUN)
    panel.pick_layer("conv1")
    info = tags(server, HTML_RUN)["conv1"]
    steps = steps_of(server, HTML_RUN, "conv1")
    panel.ui.locator(".grid .tile").nth(5).click()
    panel.wait_ready(channel="5")
    detail = panel.ui.locator("#detail")
    assert detail.is_visible()
    big = panel.canvas("#detail canvas.big")
    assert (big["w"], big["h"]) == (info["width"], info["height"])
    assert big["cssWidth"] >= 8 * info["width"], "the channel is shown zoomed"
    assert (
        panel.frame.evaluate(
            "() => getComputedStyle(document.querySelector('canvas.big')).imageRendering"
        )
        == "pixelated"
    )
    # Hover a pixel: the readout gives the real activation, undoing the PNG's scaling.
    box = panel.ui.locator("#detail canvas.big").bounding_box()
    px, py = 17, 9
    panel.page.mouse.move(
        box["x"] + (px + 0.5) * box["width"] / info["width"],
        box["y"] + (py + 0.5) * box["height"] / info["height"],
    )
    readout = panel.ui.locator("#readout").text_content()
    m = re.match(rf"x {px}, y {py}: (\S+)", readout)
    assert m, readout
    layer = api(server, "layer", run=HTML_RUN, tag="conv1", step=steps[-1], probe=0)
    lo, hi = layer["stats"][5][:2]
    level = layer_levels(layer)[5]
    expected = lo + level[py, px] / 255 * (hi - lo)
    assert float(m.group(1)) == pytest.approx(expected, rel=5e-3, abs=1e-6)
    # A colorbar in real units, and the statistics.
    ticks = panel.ui.locator("#detail .colorbar-ticks span").all_text_contents()
    assert float(ticks[0]) == pytest.approx(lo, rel=5e-3, abs=1e-6)
    assert float(ticks[-1]) == pytest.approx(hi, rel=5e-3, abs=1e-6)
    assert "mean" in panel.ui.locator("#detail .stats").text_content()
    # The evolution over every kept step, the current one marked.
    panel.ui.locator("body[data-evolution-channel='5']").wait_for(state="attached")
    frames = panel.ui.locator("#evolution .frame")
    assert frames.count() == len(steps)
    assert frames.locator(".frame-label").all_text_contents() == [str(s) for s in steps]
    assert panel.ui.locator("#evolution .frame.current").text_content() == str(steps[-1])
    first, last = (
        panel.canvas("#evolution canvas", 0),
        panel.canvas("#evolution canvas", len(steps) - 1),
    )
    assert first["digest"] != last["digest"], "the channel changes over training"
    # A frame of the evolution is a way to the step.
    frames.nth(0).click()
    panel.wait_ready(step=str(steps[0]), channel="5")
    assert panel.ui.locator("#evolution .frame.current").text_content() == str(steps[0])
    # Escape closes it.
    panel.page.keyboard.press("Escape")
    assert detail.is_hidden()


def test_step_slider_keys_typed_step_and_play_change_the_image(panel, server):
    panel.open()
    panel.pick_run(HTML_RUN)
    panel.pick_layer("conv1")
    steps = steps_of(server, HTML_RUN, "conv1")
    assert len(steps) >= 5
    latest = panel.tile(0)
    # The slider, by keyboard on the slider itself.
    slider = panel.ui.locator("#step-slider")
    slider.focus()
    panel.page.keyboard.press("Home")
    panel.wait_ready(step=str(steps[0]))
    first = panel.tile(0)
    assert first["digest"] != latest["digest"]
    assert panel.ui.locator("#step-input").input_value() == str(steps[0])
    # Arrow keys anywhere else in the panel.
    panel.ui.locator(".layer-heading").click()
    panel.page.keyboard.press("ArrowRight")
    panel.wait_ready(step=str(steps[1]))
    panel.page.keyboard.press("ArrowLeft")
    panel.wait_ready(step=str(steps[0]))
    # An exact step, typed.
    target = steps[len(steps) // 2]
    panel.ui.locator("#step-input").fill(str(target))
    panel.ui.locator("#step-input").press("Enter")
    panel.wait_ready(step=str(target))
    assert panel.tile(0)["digest"] != first["digest"]
    # Dragging the slider to its end.
    box = slider.bounding_box()
    panel.page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    panel.wait_ready(step=str(steps[-1]))
    assert panel.tile(0)["digest"] == latest["digest"]
    # Play runs through the steps from the start and stops at the end.
    panel.ui.locator("#prev-step").click()
    panel.wait_ready(step=str(steps[-2]))
    panel.ui.locator("#play").click()
    panel.wait_ready(step=str(steps[-1]))
    panel.ui.locator("#play", has_text="Play").wait_for()


def test_colormap_and_normalization_change_the_pixels(panel, server):
    stats = api(server, "stats", run=HTML_RUN, tag="conv1")
    # (steps, channels, fields) of probe 0; None is a NaN.
    arr = np.array(
        [[[np.nan if v is None else v for v in ch] for ch in s["stats"][0]] for s in stats["steps"]]
    )
    lo, hi = arr[..., 0], arr[..., 1]
    # A step where the fixed scales must differ from that step's own: some of
    # the first tiles' ranges, and the layer's, are narrower than over all steps.
    own_differs = (lo[:, :4] != lo[:, :4].min(0)) | (hi[:, :4] != hi[:, :4].max(0))
    layer_differs = (lo.min(1) != lo.min()) | (hi.max(1) != hi.max())
    score = own_differs.sum(1) + 10 * layer_differs
    at = int(np.argmax(score))
    assert own_differs[at].any() and layer_differs[at]
    step = stats["steps"][at]["step"]

    panel.open(f"&run={quote(HTML_RUN)}&layer=conv1&step={step}")
    panel.wait_ready(step=str(step))
    base = [panel.tile(c) for c in range(4)]
    assert not base[0]["gray"]
    panel.ui.locator("#colormap").select_option("gray")
    panel.wait_ready(cmap="gray")
    gray = [panel.tile(c) for c in range(4)]
    assert all(g["gray"] for g in gray)
    assert gray[0]["digest"] != base[0]["digest"]
    digests = {"channel": [g["digest"] for g in gray]}
    for norm in ("layer", "channel-fixed", "layer-fixed"):
        panel.ui.locator("#normalization").select_option(norm)
        panel.wait_ready(norm=norm, step=str(step))
        digests[norm] = [panel.tile(c)["digest"] for c in range(4)]
    assert digests["layer"] != digests["channel"]
    assert digests["layer-fixed"] != digests["layer"]
    assert digests["channel-fixed"] != digests["channel"]
    # A shared scale has a colorbar in real units spanning the whole layer.
    ticks = panel.ui.locator("#legend .colorbar-ticks span").all_text_contents()
    assert float(ticks[0]) == pytest.approx(np.nanmin(lo), rel=5e-3, abs=1e-6)
    assert float(ticks[-1]) == pytest.approx(np.nanmax(hi), rel=5e-3, abs=1e-6)
    # Coolwarm is centred on zero for shared scales.
    panel.ui.locator("#colormap").select_option("coolwarm")
    panel.wait_ready(cmap="coolwarm")
    ticks = panel.ui.locator("#legend .colorbar-ticks span").all_text_contents()
    assert float(ticks[0]) == pytest.approx(-float(ticks[-1]))
    assert "0" in ticks


def test_all_zero_channels_are_marked(panel):
    panel.open()
    panel.pick_run(HTML_RUN)
    panel.pick_layer("zeros")
    tiles = panel.ui.locator(".grid .tile")
    assert tiles.count() == 4
    assert panel.ui.locator(".grid .tile .badge.dead").count() == 4
    panel.pick_layer("concat")
    # The concatenation's last four channels are the zero branch.
    dead = panel.frame.evaluate(
        "() => [...document.querySelectorAll('.grid .tile')]"
        ".map(t => t.classList.contains('is-dead'))"
    )
    assert dead[-4:] == [True] * 4 and not all(dead)


def test_probe_selection_switches_the_activations(panel, server):
    panel.open()
    panel.pick_run(HTML_RUN)
    panel.pick_layer("conv1")
    before = panel.tile(0)
    panel.ui.locator("#probes .probe").nth(1).click()
    panel.wait_ready(probe="1")
    assert panel.tile(0)["digest"] != before["digest"]
    assert "selected" in panel.ui.locator("#probes .probe").nth(1).get_attribute("class")


def test_units_and_sequence_layouts_render(panel, server):
    panel.open()
    panel.pick_run(HTML_RUN)
    panel.pick_layer("dense1")
    units = panel.canvas(".map-canvas")
    assert units["w"] * units["h"] >= 20 and units["w"] == 5
    assert units["variance"] > 1
    assert units["cssWidth"] >= 100
    assert "20 units" in panel.ui.locator(".strip-map .axis").text_content()
    panel.ui.locator(".map-canvas").click(position={"x": 5, "y": 5})
    panel.wait_ready(channel="0")
    panel.ui.locator("body[data-evolution-channel='0']").wait_for(state="attached")
    assert panel.ui.locator("#evolution .frame").count() == len(
        steps_of(server, HTML_RUN, "dense1")
    )
    assert panel.canvas("#evolution canvas", 0)["variance"] > 0

    panel.pick_run(SEQ_RUN)
    panel.pick_layer("conv1d")
    info = tags(server, SEQ_RUN)["conv1d"]
    assert info["layout"] == "sequence"
    seq = panel.canvas(".map-canvas")
    assert (seq["w"], seq["h"]) == (48, 10), "time across, one row per channel"
    assert seq["variance"] > 1
    box = panel.ui.locator(".map-canvas").bounding_box()
    panel.page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.35)
    assert re.match(
        r"channel 3, t = 24: \S+", panel.ui.locator(".strip-map .readout").text_content()
    )
    panel.page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.35)
    panel.wait_ready(channel="3")
    panel.ui.locator("body[data-evolution-channel='3']").wait_for(state="attached")
    assert panel.canvas("#detail canvas.big")["variance"] > 1


def test_selection_lives_in_the_url_and_survives_a_reload(panel, server):
    panel.open()
    panel.pick_run(HTML_RUN)
    panel.pick_layer(HTML_LAYER)
    steps = steps_of(server, HTML_RUN, HTML_LAYER)
    panel.ui.locator("#step-input").fill(str(steps[2]))
    panel.ui.locator("#step-input").press("Enter")
    panel.wait_ready(step=str(steps[2]))
    panel.ui.locator("#probes .probe").nth(1).click()
    panel.wait_ready(probe="1")
    panel.ui.locator("#colormap").select_option("magma")
    panel.ui.locator("#normalization").select_option("layer-fixed")
    panel.wait_ready(norm="layer-fixed", cmap="magma")
    panel.ui.locator(".grid .tile").nth(7).click()
    panel.wait_ready(channel="7")
    panel.page.wait_for_function("() => location.hash.includes('channel=7')")
    url = panel.page.url
    assert url.split("#", 1)[1].startswith("activations&")
    pixels = panel.tile(3)

    panel.page.reload()
    assert panel.page.url == url
    expected = dict(
        run=HTML_RUN,
        layer=HTML_LAYER,
        step=str(steps[2]),
        probe="1",
        cmap="magma",
        norm="layer-fixed",
        channel="7",
    )
    panel.wait_ready(**expected)
    assert panel.ui.locator("#detail").is_visible()
    assert panel.ui.locator("#run").input_value() == HTML_RUN
    assert panel.ui.locator("#colormap").input_value() == "magma"
    assert panel.ui.locator("#normalization").input_value() == "layer-fixed"
    assert panel.tile(3)["digest"] == pixels["digest"]

    # The same address in a fresh page shows the same view: it can be shared.
    fresh = panel.page.context.new_page()
    fresh.goto(url)
    other = Panel(fresh, server)
    other.wait_ready(**expected)
    assert other.tile(3)["digest"] == pixels["digest"]
    assert not other.problems


def test_switching_tensorboard_tabs_keeps_the_view(panel, server):
    panel.open(f"&run={CNN_RUN}&layer=conv2&channel=5")
    panel.wait_ready(run=CNN_RUN, layer="conv2", channel="5")
    # Keras's "train" run has no activations: it is not offered.
    assert "train" not in panel.ui.locator("#run option").all_text_contents()
    panel.page.get_by_text("Time Series", exact=False).first.click()
    panel.page.wait_for_function("() => !location.hash.startsWith('#activations')")
    panel.page.get_by_text("Activations", exact=True).first.click()
    panel.page.wait_for_function("() => location.hash.startsWith('#activations&')")
    panel.wait_ready(run=CNN_RUN, layer="conv2", channel="5")
    assert panel.ui.locator("#detail").is_visible()
    assert "channel=5" in panel.page.url and "layer=conv2" in panel.page.url


def test_new_steps_appear_live_and_the_view_follows_the_latest(panel, server, logdir):
    live, live_logger, xs, ys = logdir["live"]
    before = steps_of(server, LIVE_RUN, "conv1d")
    panel.open(f"&run={LIVE_RUN}&layer=conv1d&channel=2")
    panel.wait_ready(run=LIVE_RUN, step=str(before[-1]), channel="2")
    live.fit(xs, ys, batch_size=16, epochs=1, verbose=0, callbacks=[live_logger])
    panel.ui.locator("body[data-state=ready][data-rendered-channel='2']").wait_for(state="attached")
    from support import wait_until

    after = wait_until(
        lambda: (s := steps_of(server, LIVE_RUN, "conv1d")) and s[-1] > before[-1] and s,
        60,
        "the new step to be served",
    )
    # Polling picks it up, and a view on the latest step follows it.
    panel.wait_ready(run=LIVE_RUN, step=str(after[-1]), channel="2")
    panel.ui.locator(f"#evolution .frame[data-step='{after[-1]}']").wait_for(timeout=TIMEOUT_MS)
    assert panel.ui.locator("#layers .layer.selected .layer-name").text_content() == "conv1d"


def test_failed_requests_are_explained(panel, server):
    panel.allowed.append(re.compile(r"Failed to load resource.*(404|500)"))
    panel.page.route(
        re.compile(r".*/data/plugin/activations/series\?.*"),
        lambda route: route.fulfill(
            status=404, content_type="text/plain", body="No such <b>channel</b> here."
        ),
    )
    panel.open(f"&run={quote(HTML_RUN)}&layer=conv1")
    panel.ui.locator(".grid .tile").nth(0).click()
    error = panel.ui.locator("#errors .error")
    error.wait_for()
    assert "No such <b>channel</b> here." in error.text_content()
    assert panel.ui.locator("#errors b").count() == 0
    # The rest of the panel still works.
    assert panel.ui.locator(".grid .tile").count() == 16


def test_empty_log_directory_explains_how_to_log(browser, tmp_path):
    from support import running_tensorboard

    with running_tensorboard(tmp_path) as url:
        context = browser.new_context()
        page = context.new_page()
        p = Panel(page, url)
        page.goto(f"{url}#activations")
        p.ui.locator("body[data-state=empty]").wait_for(state="attached", timeout=TIMEOUT_MS)
        text = p.ui.locator("#empty").text_content()
        assert "ActivationLogger(" in text and "tensorboard --logdir" in text
        context.close()
        assert not p.problems, p.problems


def test_sampled_steps_are_announced_with_the_way_to_keep_all(browser, logdir):
    from support import running_tensorboard, wait_until

    with running_tensorboard(logdir["root"], "--samples_per_plugin=activations=3") as url:
        wait_until(lambda: HTML_RUN in api(url, "tags"), 120, "the runs to load")
        logged = api(url, "steps", run=HTML_RUN, tag="conv1")["steps_logged"]
        context = browser.new_context()
        p = Panel(context.new_page(), url)
        p.open(f"&run={quote(HTML_RUN)}&layer=conv1")
        note = p.ui.locator("#sampling")
        assert note.is_visible()
        text = note.text_content()
        assert f"Showing 3 of {logged} logged steps" in text
        assert "--samples_per_plugin=activations=" in text
        assert p.ui.locator("#step-slider").get_attribute("max") == "2"
        context.close()
        assert not p.problems, p.problems


def test_the_panel_gets_the_levels_chromium_decodes_from_every_logged_image(panel):
    """The server decodes the channel PNGs for the panel; what the panel's
    data layer hands to its views must be what Chromium's own decoder makes of
    the `channel` PNG, for every layer and layout, in a step's grid and in a
    channel's evolution."""
    panel.open()
    result = panel.frame.evaluate(
        """async (chromiumGraySource) => {
            const chromiumGray = eval(chromiumGraySource);
            const { Model } = await import("./static/model.js");
            const model = new Model();
            const q = (route, params) => `${route}?${new URLSearchParams(params)}`;
            const tags = await (await fetch("tags")).json();
            const out = {checked: 0, frames: 0, mismatched: []};
            const same = (a, b) => a.width === b.width && a.height === b.height
                && a.gray.length === b.gray.length && a.gray.every((v, i) => v === b.gray[i]);
            for (const [run, layers] of Object.entries(tags)) {
                for (const tag of Object.keys(layers)) {
                    if (tag === "__probe__") continue;
                    const steps = (await (await fetch(q("steps", {run, tag}))).json()).steps;
                    for (const s of [steps[0], steps[steps.length - 1]]) {
                        const layer = await model.fetchLayer(run, tag, s.step, 0);
                        for (const [c, mine] of layer.channels.entries()) {
                            const ref = await chromiumGray(
                                q("channel", {run, tag, step: s.step, channel: c}));
                            out.checked++;
                            if (!same(mine, ref)) out.mismatched.push([run, tag, s.step, c]);
                        }
                    }
                    const c = layers[tag].channels - 1;
                    const series = await model.fetchSeries(run, tag, c, 0);
                    for (const frame of series) {
                        const ref = await chromiumGray(
                            q("channel", {run, tag, step: frame.step, channel: c}));
                        out.frames++;
                        if (!same(frame, ref)) out.mismatched.push([run, tag, frame.step, c]);
                    }
                }
            }
            return out;
        }""",
        CHROMIUM_GRAY_JS,
    )
    assert result["mismatched"] == []
    assert result["checked"] > 300
    assert result["frames"] > 50


def test_drawn_gray_levels_are_the_logged_pngs_as_chromium_decodes_them(panel, server):
    """End to end: in the gray colormap at the default scale a level is its
    own colour, so the grid's tiles, the opened channel and its evolution
    show exactly the `channel` PNGs' levels."""
    steps = steps_of(server, HTML_RUN, "conv1")
    panel.open(f"&run={quote(HTML_RUN)}&layer=conv1&cmap=gray&channel=5")
    panel.wait_ready(run=HTML_RUN, layer="conv1", cmap="gray", norm="channel", channel="5")
    panel.ui.locator("body[data-evolution-channel='5']").wait_for(state="attached")
    result = panel.frame.evaluate(
        """async (chromiumGraySource) => {
            const chromiumGray = eval(chromiumGraySource);
            const b = document.body.dataset;
            const q = (params) => `channel?${new URLSearchParams(
                {run: b.renderedRun, tag: b.renderedLayer, ...params})}`;
            const red = (canvas, x, y, w, h) => {
                const d = canvas.getContext("2d").getImageData(x, y, w, h).data;
                const gray = new Uint8Array(w * h);
                for (let i = 0; i < gray.length; i++) gray[i] = d[4 * i];
                return {width: w, height: h, gray};
            };
            const same = (a, b) => a.width === b.width && a.height === b.height
                && a.gray.every((v, i) => v === b.gray[i]);
            const out = {frames: 0, mismatched: []};
            const big = document.querySelector("#detail canvas.big");
            const ref = await chromiumGray(q({step: b.renderedStep, channel: 5}));
            if (!same(red(big, 0, 0, big.width, big.height), ref)) out.mismatched.push(["big"]);
            for (const frame of document.querySelectorAll("#evolution .frame")) {
                const canvas = frame.querySelector("canvas");
                const ref = await chromiumGray(q({step: frame.dataset.step, channel: 5}));
                out.frames++;
                if (!same(red(canvas, 0, 0, canvas.width, canvas.height), ref))
                    out.mismatched.push(["frame", frame.dataset.step]);
            }
            return out;
        }""",
        CHROMIUM_GRAY_JS,
    )
    assert result["mismatched"] == []
    assert result["frames"] == len(steps)
    grid = tiles_against_logged(panel, "#view", HTML_RUN, "conv1", steps[-1])
    assert grid == {"tiles": 16, "mismatched": []}


def test_rust_data_server_shows_the_same_pixels(browser, logdir, panel, server):
    """TensorBoard's default loader is the Rust data server (--load_fast)."""
    from support import running_tensorboard, wait_until

    panel.open(f"&run={quote(HTML_RUN)}&layer=conv1&cmap=magma")
    expected = [panel.tile(c)["digest"] for c in range(16)]
    with running_tensorboard(logdir["root"], load_fast=True) as url:
        wait_until(lambda: HTML_RUN in api(url, "tags"), 120, "the runs to load")
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        p = Panel(context.new_page(), url)
        p.open(f"&run={quote(HTML_RUN)}&layer=conv1&cmap=magma")
        p.wait_ready(run=HTML_RUN, layer="conv1", cmap="magma")
        assert [p.tile(c)["digest"] for c in range(16)] == expected
        context.close()
        assert not p.problems, p.problems


def test_screenshots_of_the_demo(panel, server):
    """Writes the README's pictures: the demo's training map, the channel
    timeline of its second layer, and its first layer with a channel opened."""
    panel.page.set_viewport_size({"width": 1440, "height": 1000})
    pictures = []

    panel.open(f"&run={DEMO_RUN}&view=map")
    panel.ui.locator(f"body[data-map-rendered='{DEMO_RUN}']").wait_for(state="attached")
    pictures.append(
        save_screenshot(panel, SCREENSHOTS / "training-map.png", ["#training-map canvas.map-heat"])
    )

    panel.pick_layer("conv2")
    panel.ui.locator("body[data-timeline-rendered='conv2']").wait_for(state="attached")
    pictures.append(save_screenshot(panel, SCREENSHOTS / "timeline.png", ["#timeline-canvas"]))

    steps = steps_of(server, DEMO_RUN, "conv1")
    layer = api(server, "layer", run=DEMO_RUN, tag="conv1", step=steps[-1], probe=0)
    # The busiest channel, the one a user would open first.
    channel = int(np.argmax([s[3] if s[3] is not None else -1 for s in layer["stats"]]))
    panel.pick_layer("conv1")
    panel.ui.locator(f".grid .tile[data-channel='{channel}']").click()
    panel.ui.locator(f"body[data-evolution-channel='{channel}']").wait_for(state="attached")
    img = layer_levels(layer)[channel]
    y, x = np.unravel_index(int(np.argmax(img)), img.shape)
    box = panel.ui.locator("#detail canvas.big").bounding_box()
    panel.page.mouse.move(
        box["x"] + (x + 0.5) * box["width"] / img.shape[1],
        box["y"] + (y + 0.5) * box["height"] / img.shape[0],
    )
    assert re.match(rf"x {x}, y {y}: ", panel.ui.locator("#readout").text_content())
    drawn = ["#view .grid canvas.atlas", "#detail canvas.big", "#evolution .frame canvas"]
    pictures.append(save_screenshot(panel, SCREENSHOTS / "panel.png", drawn))
    assert [p.shape for p in pictures] == [(1000, 1440, 3)] * 3
