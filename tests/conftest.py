"""Fixtures shared by test modules, and the rule that CI runs every test.

In CI a skip is a failure: a browser, a backend venv or a tool that is missing
there would otherwise turn its tests into a quiet "s" in a green run. CI is
on when the environment variable CI is set to anything but "", "0", "false",
"no" or "off" (any case); `.ci/run` sets CI=true. So a test skips only
outside CI, with `pytest.skip(reason)` naming what is missing; the hooks below
turn that skip, wherever it is raised (a test, a fixture, a `skipif` mark, a
module), into a failure that states the reason. An expected failure
(`xfail`) is not a skip and stays as it is.
"""

import os

import pytest

CI_OFF = ("", "0", "false", "no", "off")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in CI_OFF


def _skip_reason(longrepr) -> str:
    # A skip's report holds (path, line, "Skipped: reason").
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _ci_failure(reason: str) -> str:
    return f"skipped in CI, where every test must run (CI={os.environ.get('CI')!r}): {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # The skip becomes a failure before any report is made of it, so that
    # the report carries the reason as its message, in the summary too.
    if in_ci() and call.excinfo is not None and call.excinfo.errisinstance(pytest.skip.Exception):
        reason = str(call.excinfo.value.msg)
        try:
            pytest.fail(_ci_failure(reason), pytrace=False)
        except pytest.fail.Exception:
            call.excinfo = pytest.ExceptionInfo.from_current()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    if in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = _ci_failure(_skip_reason(report.longrepr))
    return report


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per browser test module."""
    import browsing

    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright)")
    exe = browsing.chromium_path()
    if not exe:
        if os.environ.get("CHROMIUM"):
            pytest.skip(f"no Chromium at CHROMIUM={os.environ['CHROMIUM']}: no such file")
        pytest.skip("no Chromium found: install it (apt-get install chromium) or set CHROMIUM")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=browsing.CHROMIUM_ARGS)
        except PlaywrightError as e:
            pytest.skip(f"Chromium at {exe} does not start: {e}")
        yield b
        b.close()


@pytest.fixture
def panel(browser, server):
    """The Activations tab on the test module's `server`, in a fresh browser
    context that fails the test on any console error or dialog."""
    import browsing

    with browsing.open_panel(browser, server) as p:
        yield p


@pytest.fixture(scope="session")
def ground_truth(tmp_path_factory):
    """`recorded.train_ground_truth`'s run, trained once for the modules
    that only read it."""
    pytest.importorskip("keras")
    import recorded

    return recorded.train_ground_truth(tmp_path_factory.mktemp("ground_truth_logs"))


@pytest.fixture(scope="session")
def ground_truth_server(ground_truth):
    """A `tensorboard` process on `ground_truth`, once its conv2 is listed."""
    import browsing

    run = "activations"
    with browsing.serving(ground_truth.log_dir, lambda tags: "conv2" in tags.get(run, {})) as url:
        yield url
