"""What the browser benchmarks share: the VGG16 logs they serve and the browser they drive.

The logs are written with the public API only (`ActivationLogger` and its
`session`), once per directory: a `complete.json` beside them records what
was written, and a directory whose record matches is reused as it is.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode

import common
from common import LAYERS

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from browsing import CHROMIUM_ARGS, chromium_path  # noqa: E402
from support import fetch  # noqa: E402

RUN = "vgg16"  # the log directory's subdirectory TensorBoard is pointed at


@dataclass(frozen=True)
class Evolution:
    """How the weights move between two logged steps.

    Every kernel gets Gaussian noise of `noise` x its standard deviation,
    times `exp(-step / (settle * block))` for the layers of VGG16's block
    `block` (1 to 5), so that lower blocks settle first; `shock` x that
    noise hits `shock_block` at `shock_step`. `deaths` channels of each
    logged layer (as a fraction of its channels) die at steps spread over
    the middle of the run, by a bias far below any activation into their
    ReLU; `revivals` of them (a fraction) get their bias back later.
    """

    noise: float = 0.03
    settle: float | None = None
    shock_step: int | None = None
    shock_block: int = 3
    shock: float = 10.0
    deaths: float = 0.0
    revivals: float = 0.0
    epoch_steps: int | None = None
    loss: bool = False

    def scale(self, step: int, block: int) -> float:
        s = self.noise
        if self.settle:
            s *= float(np.exp(-step / (self.settle * block)))
        if step == self.shock_step and block == self.shock_block:
            s *= self.shock
        return s


def block_of(name: str) -> int:
    return int(name[len("block")]) if name.startswith("block") else 0


def death_plan(model, steps: int, evolution: Evolution, rng) -> dict[int, list]:
    """{step: [(layer, channel, bias or None)]}: None kills the channel, a value revives it."""
    plan: dict[int, list] = {}
    for name in LAYERS:
        bias = model.get_layer(name).weights[1]
        channels = int(bias.shape[0])
        k = int(round(evolution.deaths * channels))
        if not k:
            continue
        chosen = rng.choice(channels, size=k, replace=False)
        die_at = np.linspace(steps * 0.2, steps * 0.7, k).astype(int)
        n_revive = int(round(evolution.revivals * k))
        for i, (c, s) in enumerate(zip(chosen, die_at)):
            plan.setdefault(int(s), []).append((name, int(c), None))
            if i < n_revive:
                back = min(steps - 1, int(s) + max(2, steps // 8))
                plan.setdefault(back, []).append((name, int(c), "revive"))
    return plan


# Far below any pre-activation of these layers on the probe: ReLU gives exactly 0.
DEAD_BIAS = -1e6


def evolve(model, step: int, evolution: Evolution, plan, saved, rng) -> None:
    import keras

    for layer in model.layers:
        if not layer.weights:
            continue
        k = layer.weights[0]
        w = keras.ops.convert_to_numpy(k)
        scale = evolution.scale(step, block_of(layer.name))
        k.assign(w + rng.normal(0, scale * w.std(), w.shape).astype(w.dtype))
    for name, c, action in plan.get(step, ()):
        bias = model.get_layer(name).weights[1]
        b = keras.ops.convert_to_numpy(bias).copy()
        if action is None:
            saved[(name, c)] = b[c]
            b[c] = DEAD_BIAS
        else:
            b[c] = saved.pop((name, c))
        bias.assign(b)


def write_loss(logdir: Path, steps: int, evolution: Evolution) -> None:
    """Loss scalars as Keras's `TensorBoard` callback writes them beside the activations.

    `train/`: `epoch_loss` by epoch index and `batch_loss` by iteration. The
    values are a decaying curve with a bump at the shock (the weights here are
    perturbed, not trained), so that the panel has a curve to draw and map.
    """
    import tensorflow as tf

    t = np.arange(steps, dtype=np.float64)
    loss = 2.0 * np.exp(-t / (steps / 4)) + 0.3
    if evolution.shock_step is not None:
        loss += (
            0.8 * np.exp(-np.maximum(0, t - evolution.shock_step) / 6) * (t >= evolution.shock_step)
        )
    writer = tf.summary.create_file_writer(str(logdir / RUN / "train"))
    with writer.as_default():
        for s in range(1, steps):
            tf.summary.scalar("batch_loss", float(loss[s]), step=s)
        e = evolution.epoch_steps
        for epoch in range(1, steps // e if e else 0):
            tf.summary.scalar("epoch_loss", float(loss[epoch * e]), step=epoch - 1)
    writer.close()


def write_vgg16_log(
    logdir: Path, steps: int, evolution: Evolution = Evolution(), seed: int = 0
) -> Path:
    """VGG16's five `blockN_conv1` layers over `steps` steps in `logdir/vgg16/activations`.

    Step 0 is the seeded model; before every later step `evolution` moves
    the weights, with noise drawn from `seed` (another seed: another run of
    the same model). Returns the directory to give TensorBoard. A directory
    that already holds this log is kept as it is.
    """
    import keras

    from tb_activations import ActivationLogger

    done = logdir / "complete.json"
    want = {"steps": steps, "evolution": asdict(evolution)}
    if seed:
        want["seed"] = seed
    if done.exists() and json.loads(done.read_text()) == want:
        return logdir / RUN
    if (logdir / RUN).exists():
        raise FileExistsError(
            f"{logdir / RUN} holds another or an unfinished log ({done.name} does not match "
            f"{want}); remove it or pass another --logdir"
        )
    keras.utils.set_random_seed(0)
    model = common.vgg16()
    pixels = common.probe_pixels()
    rng = np.random.default_rng(seed)
    logger = ActivationLogger(
        logdir / RUN,
        pixels,
        layers=LAYERS,
        preprocess=keras.applications.vgg16.preprocess_input,
        verbose=0,
    )
    logger.set_model(model)
    session = logger.session
    session.bind(model)
    plan = death_plan(model, steps, evolution, rng) if evolution.deaths else {}
    saved: dict = {}
    t = time.perf_counter()
    for s in range(steps):
        if s:
            evolve(model, s, evolution, plan, saved, rng)
        epoch = s / evolution.epoch_steps if evolution.epoch_steps else None
        session.log(s, epoch=epoch, strict=True)
        if s % 20 == 19:
            print(
                f"logged {s + 1}/{steps} steps ({time.perf_counter() - t:.0f} s)", file=sys.stderr
            )
    session.close()
    if evolution.loss:
        write_loss(logdir, steps, evolution)
    print(f"wrote {steps} steps of activations in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    done.write_text(json.dumps(want))
    return logdir / RUN


def values_by_hand(event) -> np.ndarray:
    """One logged layer-step in real units as a user decodes it from the documented
    format (docs/format.md): its PNGs with Pillow, scaled by each channel's min/max.

    `event` is an `EventAccumulator` tensor event; returns (probes x channels, h, w).
    """
    import io

    from PIL import Image

    from tb_activations import metadata

    blobs = event.tensor_proto.string_val
    stats = metadata.decode_stats(blobs[metadata.STATS_INDEX])  # (probes, channels, fields)
    # Each PNG stacks some channels of one probe top to bottom, in order:
    # all of them, top to bottom, are every (probe, channel) map.
    stacked = np.concatenate(
        [np.asarray(Image.open(io.BytesIO(b))) for b in blobs[metadata.FIRST_IMAGE_INDEX :]]
    )
    levels = stacked.reshape(stats.shape[0] * stats.shape[1], -1, stacked.shape[1])
    levels = levels.astype(np.float32)
    lo = stats[..., 0].reshape(-1, 1, 1)
    hi = stats[..., 1].reshape(-1, 1, 1)
    return lo + levels / 255.0 * (hi - lo)


def chromium() -> str:
    path = chromium_path()
    if path is None:
        raise SystemExit("No Chromium found (set CHROMIUM, or `make browser`)")
    return path


def machine_info(loads, extra=()) -> str:
    """`common.machine_info` with the browser and the load at the start and end of each part."""
    return common.machine_info(
        [
            f"Chromium {chromium()} with {' '.join(CHROMIUM_ARGS)}",
            "1-min load average at the start and end of each part: "
            + ", ".join(f"{x:.2f}" for x in loads)
            + " (the cores are shared with other processes)",
            *extra,
        ]
    )


def launch(playwright):
    """Headless Chromium with the browser tests' flags."""
    return playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)


def api_json(base, route, plugin="activations", **params):
    r = fetch(f"{base}data/plugin/{plugin}/{route}?{urlencode(params)}")
    if r.status != 200:
        raise ValueError(f"{route} answered {r.status}: {r.text[:200]}")
    return r.json()


def timed_fetch(base, route, **params) -> tuple[float, int]:
    """Seconds and bytes of one route's answer, fetched directly (no browser)."""
    t = time.perf_counter()
    r = fetch(f"{base}data/plugin/activations/{route}?{urlencode(params)}", timeout=300)
    if r.status != 200:
        raise ValueError(f"{route} answered {r.status}: {r.text[:200]}")
    return time.perf_counter() - t, len(r.body)


VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 60_000

# Counts the page's fetches in flight, to wait for prefetching to settle
# between two measures (a user pauses between two clicks too).
INFLIGHT_SCRIPT = """
(() => {
  const f = window.fetch.bind(window);
  window.__inflight = 0;
  window.fetch = (...args) => {
    window.__inflight++;
    return f(...args).then(
      async (r) => {
        try { await r.clone().arrayBuffer(); } finally { window.__inflight--; }
        return r;
      },
      (e) => { window.__inflight--; throw e; });
  };
})();
"""

# Operates one control and resolves with the time to the panel's "ready"
# (body[data-state=ready] with the expected data-* values and, when named,
# a performance.measure of the panel made after the control was operated)
# and to the next frames after it.
MEASURE_JS = """
async ([action, arg, expect, measure]) => {
  const b = document.body;
  let t0 = 0;
  const measured = () => !measure ||
    performance.getEntriesByName(measure).some((e) => e.startTime >= t0);
  const ok = () => b.dataset.state === "ready" && measured() &&
    Object.entries(expect).every(([k, v]) => b.dataset[k] === v);
  if (!measure && ok()) throw new Error("already showing " + JSON.stringify(expect));
  let observer;
  let resolve;
  const done = new Promise((res, reject) => {
    resolve = res;
    setTimeout(() => reject(new Error("no render of " + JSON.stringify([expect, measure]))),
               60000);
  });
  const check = () => { if (ok()) resolve(performance.now()); };
  observer = new MutationObserver(check);
  observer.observe(b, { attributes: true });
  const actions = {
    layer: (name) =>
      b.querySelector(`#layers button.layer[data-layer="${CSS.escape(name)}"]`).click(),
    channel: (c) => b.querySelector(`.grid .tile[data-channel="${c}"]`).click(),
    click: (selector) => b.querySelector(selector).click(),
    slider: (index) => {
      const s = document.getElementById("step-slider");
      s.value = String(index);
      s.dispatchEvent(new Event("input", { bubbles: true }));
    },
    select: ([id, value]) => {
      const s = document.getElementById(id);
      if (![...s.options].some((o) => o.value === value)) {
        throw new Error(`#${id} offers no ${value}`);
      }
      s.value = value;
      s.dispatchEvent(new Event("input", { bubbles: true }));
      s.dispatchEvent(new Event("change", { bubbles: true }));
    },
  };
  t0 = performance.now();
  actions[action](arg);
  // A control whose handler draws synchronously changes no attribute later.
  check();
  const poll = () => { check(); requestAnimationFrame(poll); };
  requestAnimationFrame(poll);
  const ready = await done;
  observer.disconnect();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const painted = performance.now() - t0;
  // The panel's own requests for this render (prefetches start after it).
  const res = performance.getEntriesByType("resource").filter((e) =>
    e.startTime >= t0 && e.startTime <= ready && e.name.includes("/data/plugin/activations/"));
  const routes = {};
  for (const e of res) {
    const route = e.name.split("/data/plugin/activations/")[1].split("?")[0];
    routes[route] = Math.max(routes[route] || 0, e.responseEnd - t0);
  }
  const measures = {};
  for (const e of performance.getEntriesByType("measure")) {
    if (e.startTime >= t0 && e.name.startsWith("activations:")) {
      measures[e.name] = (measures[e.name] || 0) + e.duration;
    }
  }
  return { ready: ready - t0, painted,
           fetched: res.length ? Math.max(...res.map((e) => e.responseEnd)) - t0 : 0,
           bytes: res.reduce((a, e) => a + (e.encodedBodySize || 0), 0),
           requests: res.length, routes, measures,
           data: { ...b.dataset },
           tiles: b.querySelectorAll(".grid .tile").length,
           frames: b.querySelectorAll("#evolution .frame").length };
}
"""


def rendered(**expect) -> dict[str, str]:
    """`layer="x"` as the body's dataset key `renderedLayer`."""
    return {"rendered" + k[0].upper() + k[1:]: str(v) for k, v in expect.items()}


class Session:
    """One fresh browser context on the panel: nothing is cached in the page at its start.

    Opens TensorBoard at `#activations<hash_params>` and waits until the
    panel's body is ready with the `ready` data-* values (dataset keys).
    """

    def __init__(self, browser, base, hash_params: str, ready: dict[str, str]):
        self.context = browser.new_context(viewport=VIEWPORT)
        self.context.add_init_script(INFLIGHT_SCRIPT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{base}#activations{hash_params}")
        self.frame = self._frame()
        self.frame.wait_for_function(
            # The body is null while the iframe is still navigating.
            """(want) => document.body?.dataset.state === "ready" &&
                Object.entries(want).every(([k, v]) => document.body.dataset[k] === v)""",
            arg=ready,
            polling=50,
            timeout=TIMEOUT_MS,
        )
        self.settle()

    def _frame(self):
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            for f in self.page.frames:
                if "plugin_entry.html" in f.url and "activations" in f.url:
                    return f
            # Sleeping through Playwright lets it process the page's events.
            self.page.wait_for_timeout(50)
        raise TimeoutError(f"No Activations iframe among {[f.url for f in self.page.frames]}")

    def settle(self, quiet_ms: int = 400) -> None:
        """Waits until no fetch has been in flight for `quiet_ms`."""
        self.frame.wait_for_function(
            """(quiet) => {
                const now = performance.now();
                if (window.__inflight > 0) { window.__quietSince = null; return false; }
                window.__quietSince = window.__quietSince || now;
                return now - window.__quietSince >= quiet;
            }""",
            arg=quiet_ms,
            polling=50,
            timeout=TIMEOUT_MS,
        )
        self.frame.evaluate("() => { window.__quietSince = null; }")

    def measure(self, action, arg, expect: dict[str, str], measure: str | None = None) -> dict:
        """Times one control; `expect` holds dataset keys (see `rendered`)."""
        result = self.frame.evaluate(MEASURE_JS, [action, arg, expect, measure])
        self.settle()
        return result

    def data(self, key: str) -> str | None:
        return self.frame.evaluate("(k) => document.body.dataset[k]", key)

    def close(self) -> None:
        if self.errors:
            raise RuntimeError(f"page errors: {self.errors}")
        self.context.close()
