"""The panel's files (frontend/): each module is checked by TypeScript
(`// @ts-check` and JSDoc types, no build step) and no file is over 600
lines."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tb_activations import static

FRONTEND = Path(__file__).resolve().parents[1] / "frontend"
MODULES = sorted(FRONTEND.glob("*.js"))
TSC_ARGS = ["--noEmit", "--allowJs", "--checkJs"]
TSC_ARGS += ["--target", "es2022", "--module", "es2022", "--lib", "es2022,dom"]


def find_tsc() -> str | None:
    for candidate in (
        os.environ.get("TSC"),
        shutil.which("tsc"),
        str(FRONTEND.parent / "node_modules" / ".bin" / "tsc"),
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_every_module_asks_to_be_type_checked(module):
    assert module.read_text().startswith("// @ts-check\n")


@pytest.mark.parametrize("part", sorted(FRONTEND.iterdir()), ids=lambda p: p.name)
def test_no_file_is_over_600_lines(part):
    assert len(part.read_text().splitlines()) <= 600


def test_the_panel_type_checks():
    tsc = find_tsc()
    if tsc is None or shutil.which("node") is None:
        reason = "TypeScript is not installed: npm install typescript@5, or set TSC to its tsc"
        # In CI the check must run, as the browser tests must.
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    r = subprocess.run(
        [tsc, *TSC_ARGS, *map(str, MODULES)], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout + r.stderr


def imports_of(module: str) -> set[str]:
    """The modules `module` reaches through its static imports, itself included."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += re.findall(r'^import\s[^;]*?from\s+"\./([^"]+)";', read(name), re.M | re.S)
    return seen


def listed(name: str) -> list[str]:
    """The strings of index.js's array `name`."""
    body = re.search(rf"export const {name} = \[(.*?)\];", read("index.js"), re.S)
    assert body, f"index.js has no array {name}"
    return re.findall(r'"([^"]+)"', body.group(1))


def read(name: str) -> str:
    return (FRONTEND / name).read_text()


def dynamic_imports(of=None) -> set[str]:
    """The modules code loads with `import("./x.js")` (comments, where JSDoc
    names types as `import("./x.js").T`, left out): the panel's own, or
    those of the files `of` (index.js's are the preloaded app.js and
    layer-order.js)."""
    found = set()
    for p in of or [m for m in MODULES if m.name != "index.js"]:
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", p.read_text(), flags=re.S)
        found |= set(re.findall(r'\bimport\(\s*"\./([^"]+)"\s*\)', code))
    return found


def test_index_preloads_every_module_the_first_screen_imports():
    # index.js imports nothing, so that it starts every fetch at once; a
    # module missing from its list would be found a round trip later.
    assert not re.search(r"^import\s", read("index.js"), re.M)
    modules = listed("MODULES")
    assert len(modules) == len(set(modules))
    assert set(modules) == imports_of("app.js") - {"index.js"}


def test_the_views_loaded_on_first_use_are_not_preloaded():
    # A view the first screen does not draw is fetched when first shown:
    # LAZY is what only dynamic imports reach, and none of it is in MODULES.
    lazy = listed("LAZY")
    assert len(lazy) == len(set(lazy))
    assert dynamic_imports() <= set(lazy)
    reached = set().union(*map(imports_of, dynamic_imports())) - {"index.js"}
    assert set(lazy) == reached - set(listed("MODULES"))
    assert set(listed("MODULES")) | set(lazy) | {"index.js"} == {p.name for p in MODULES}
    assert dynamic_imports([FRONTEND / "index.js"]) <= set(listed("MODULES"))
    assert "for (const file of MODULES)" in read("index.js")


def test_index_loads_the_stylesheet_made_of_every_part():
    # The server joins the parts; one left out of its list would not apply.
    assert re.search(rf'export const STYLESHEET = "{static.STYLESHEET}";', read("index.js"))
    parts = static.STYLESHEET_PARTS
    assert len(parts) == len(set(parts))
    assert set(parts) == {p.name for p in FRONTEND.glob("*.css")}
