"""Driving the Activations tab in headless Chromium, shared by the browser
test modules: finding the browser, the panel inside TensorBoard's page, and
the plugin's HTTP API beside it."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    """The browser named by CHROMIUM when it is set (None if that file does not
    exist: a browser asked for by name is never swapped for another), else
    the first Chromium on PATH or at /usr/bin/chromium."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named if os.path.exists(named) else None
    for candidate in (
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def api(base, route, **params):
    from support import fetch

    qs = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
    r = fetch(f"{base}data/plugin/activations/{route}" + (f"?{qs}" if qs else ""))
    assert r.status == 200, (route, params, r.status, r.text)
    return r.json() if "json" in r.content_type else r.body


def layer_levels(layer) -> np.ndarray:
    """A `layer` answer's gray levels as (channels, height, width)."""
    shape = (layer["channels"], layer["height"], layer["width"])
    return np.frombuffer(base64.b64decode(layer["pixels"]), np.uint8).reshape(shape)


class Panel:
    """TensorBoard's page with the Activations tab, and the tab's iframe."""

    def __init__(self, page, base):
        self.page = page
        self.base = base
        self.problems: list[str] = []
        self.allowed: list[re.Pattern] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("dialog", self._dialog)

    def _console(self, msg):
        if msg.type == "error" and not any(p.search(msg.text) for p in self.allowed):
            self.problems.append(f"console error: {msg.text} at {msg.location}")

    def _dialog(self, dialog):
        self.problems.append(f"a dialog opened: {dialog.type} {dialog.message!r}")
        dialog.dismiss()

    def open(self, hash_params: str = ""):
        self.page.goto(f"{self.base}#activations{hash_params}")
        self.wait_ready()
        return self

    @property
    def ui(self):
        return self.page.frame_locator("iframe")

    @property
    def frame(self):
        for f in self.page.frames:
            if "plugin_entry.html" in f.url and "activations" in f.url:
                return f
        raise AssertionError(f"No Activations iframe among {[f.url for f in self.page.frames]}")

    def wait_ready(self, **rendered):
        """Waits until the panel says a render finished, with these values."""
        sel = "body[data-state=ready]" + "".join(
            f'[data-rendered-{k}="{v}"]' for k, v in rendered.items()
        )
        self.ui.locator(sel).wait_for(state="attached", timeout=TIMEOUT_MS)

    def data(self, key):
        return self.frame.evaluate("(k) => document.body.dataset[k]", key)

    def pick_run(self, run):
        self.ui.locator("#run").select_option(value=run)
        self.wait_ready(run=run)

    def pick_layer(self, layer):
        # By the exact name: "conv2" is also a substring of "Conv2D" in the
        # first layer's description, and has_text ignores case.
        name = self.ui.locator(".layer-name", has_text=re.compile(f"^{re.escape(layer)}$"))
        self.ui.locator("#layers button.layer").filter(has=name).click()
        self.wait_ready(layer=layer)

    def canvas(self, selector: str, index: int = 0) -> dict:
        """Pixels of a canvas: size, luminance variance and a digest."""
        return self._pixels(selector, index, None)

    def tile(self, channel: int) -> dict:
        """Pixels of one channel's tile in the grid."""
        return self._pixels(".grid canvas.atlas", 0, channel)

    def _pixels(self, selector, index, tile):
        return self.frame.evaluate(
            """([sel, i, tile]) => {
                const c = document.querySelectorAll(sel)[i];
                if (!c) return null;
                let [x, y, w, ht] = [0, 0, c.width, c.height];
                if (tile !== null) {
                    const t = document.querySelector(`.grid .tile[data-channel="${tile}"]`).dataset;
                    [x, y, w, ht] = [+t.ax, +t.ay, +t.w, +t.h];
                }
                const d = c.getContext("2d").getImageData(x, y, w, ht).data;
                let h = 2166136261, s = 0, s2 = 0, gray = true;
                for (let j = 0; j < d.length; j += 4) {
                    const l = (d[j] + d[j + 1] + d[j + 2]) / 3;
                    s += l; s2 += l * l;
                    if (d[j] !== d[j + 1] || d[j] !== d[j + 2]) gray = false;
                    h = Math.imul(h ^ d[j], 16777619) ^ d[j + 1];
                    h = Math.imul(h ^ d[j + 2], 16777619) >>> 0;
                }
                const n = d.length / 4;
                return {w, h: ht, variance: s2 / n - (s / n) ** 2,
                        digest: h >>> 0, gray, cssWidth: c.getBoundingClientRect().width};
            }""",
            [selector, index, tile],
        )


# Chromium's own decoding of a PNG the server sends, as gray levels: colour
# management off, so the levels arrive untouched; 8-bit gray has R = G = B.
CHROMIUM_GRAY_JS = """
async (url) => {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const bitmap = await createImageBitmap(await response.blob(), {
        colorSpaceConversion: "none",
        premultiplyAlpha: "none",
    });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
    const gray = new Uint8Array(bitmap.width * bitmap.height);
    for (let i = 0; i < gray.length; i++) gray[i] = rgba[4 * i];
    return {width: bitmap.width, height: bitmap.height, gray};
}
"""


def tiles_against_logged(panel: Panel, container: str, run: str, tag: str, step: int) -> dict:
    """Each tile of the grid in `container`, drawn in the gray colormap at the
    default scale (where a level is its own colour), against the logged
    `channel` PNG of `run`, `tag`, `step` as Chromium decodes it. Returns
    {"tiles": how many, "mismatched": [their channels]}."""
    return panel.frame.evaluate(
        """async ([chromiumGraySource, container, run, tag, step]) => {
            const chromiumGray = eval(chromiumGraySource);
            const atlas = document.querySelector(`${container} .grid canvas.atlas`);
            const out = {tiles: 0, mismatched: []};
            for (const tile of document.querySelectorAll(`${container} .grid .tile`)) {
                const t = tile.dataset;
                const params = {run, tag, step, channel: t.channel};
                const ref = await chromiumGray(`channel?${new URLSearchParams(params)}`);
                const d = atlas.getContext("2d").getImageData(+t.ax, +t.ay, +t.w, +t.h).data;
                out.tiles++;
                if (ref.width !== +t.w || ref.height !== +t.h
                    || !ref.gray.every((v, i) => v === d[4 * i])) out.mismatched.push(+t.channel);
            }
            return out;
        }""",
        [CHROMIUM_GRAY_JS, container, run, tag, step],
    )


# A grid that runs on below the picture's bottom edge is still in it.
SHOWN_AREA = 200 * 200


def save_screenshot(panel: Panel, path, drawn: list[str], **options) -> np.ndarray:
    """Takes a screenshot of the page and saves it at `path` (the README's
    pictures are such screenshots), once it shows each element of `drawn`
    (selectors in the panel) with real pixels: half of the element's box, or
    at least SHOWN_AREA pixels of it, are in the picture, and there its
    colours vary and are mostly not the page's background. A blank or
    missing panel fails here, not in a reader's eyes.
    Returns the picture as (h, w, 3)."""
    png = panel.page.screenshot(**options)
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.int64)
    # The page's background: the colour most of the picture has.
    colours, counts = np.unique(picture.reshape(-1, 3), axis=0, return_counts=True)
    background = colours[counts.argmax()]
    frame = panel.page.locator("iframe").bounding_box()
    for selector in drawn:
        box = panel.ui.locator(selector).first.bounding_box()
        assert box is not None, f"{selector} is not shown in {path}"
        x0, y0 = max(box["x"], frame["x"], 0), max(box["y"], frame["y"], 0)
        x1 = min(box["x"] + box["width"], frame["x"] + frame["width"], picture.shape[1])
        y1 = min(box["y"] + box["height"], frame["y"] + frame["height"], picture.shape[0])
        seen = max(0, x1 - x0) * max(0, y1 - y0)
        assert seen >= min(0.5 * box["width"] * box["height"], SHOWN_AREA) > 0, (
            f"{selector} at {box} is hardly in {path} ({picture.shape[1]} x "
            f"{picture.shape[0]}, the panel's frame at {frame})"
        )
        region = picture[round(y0) : round(y1), round(x0) : round(x1)]
        luminance = region.mean(axis=2)
        flat = (region == background).all(axis=2).mean()
        assert luminance.std() > 5 and flat < 0.5, (
            f"{selector} looks blank in {path}: luminance std {luminance.std():.1f}, "
            f"{flat:.0%} of it the page's background {background.tolist()}"
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png)
    return picture


@contextlib.contextmanager
def open_panel(browser, base):
    """A fresh browser context on TensorBoard at `base`; the test fails on any
    console error, page error or dialog the panel caused."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    p = Panel(page, base)
    try:
        yield p
    finally:
        context.close()
    assert not p.problems, "\n".join(p.problems)


@contextlib.contextmanager
def serving(logdir, ready, *args: str):
    """A `tensorboard` process on `logdir`, yielded once `ready(tags)` holds for
    the plugin's `tags` answer (the first load of a log directory takes a
    while)."""
    from support import running_tensorboard, wait_until

    with running_tensorboard(logdir, *args) as url:
        wait_until(lambda: ready(api(url, "tags")), 120, "the runs to load")
        yield url
