"""The build the benchmarks measure: the wheel ``pip install`` makes of this checkout.

A wheel has the token path compiled with mypyc (``hatch_build.py``); an editable install
runs the ``.py`` sources. ``compiled_site`` builds the wheel once per source tree (cached
under ``build/compiled/<hash of the sources>``) and unpacks it; ``use_compiled_build`` puts
it ahead of the checkout on ``sys.path`` and on ``PYTHONPATH`` (for the servers and the
callgrind runs), before anything imports ``attesto_asgi``. Imports nothing of the library.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

__all__ = [
    "check_build",
    "compiled_env",
    "compiled_modules",
    "compiled_site",
    "loaded_build",
    "server_cwd",
    "use_compiled_build",
]

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules() -> list[str]:
    """Dotted names of the modules a wheel compiles (pyproject.toml)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    paths: list[str] = project["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"]["compile"]
    return [p.removesuffix(".py").replace("/", ".") for p in paths]


def _sources_digest() -> str:
    h = hashlib.sha256()
    for path in sorted([*(ROOT / "attesto_asgi").rglob("*.py"), ROOT / "hatch_build.py", ROOT / "pyproject.toml"]):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def compiled_site() -> Path:
    """A directory holding this checkout's compiled ``attesto_asgi``, built when missing."""
    site = ROOT / "build" / "compiled" / _sources_digest()
    if site.is_dir():
        return site
    print("building the compiled wheel (mypyc, about a minute)...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="attesto-wheel-") as tmp:
        wheels = Path(tmp) / "wheels"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
            env={**os.environ, "ATTESTO_ASGI_COMPILE": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"building the compiled wheel failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        (wheel,) = wheels.glob("attesto_asgi-*.whl")
        unpacked = Path(tmp) / "site"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        site.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(unpacked, site)  # atomic: a concurrent build of the same sources wins or loses whole
        except OSError:
            if not site.is_dir():
                raise
            shutil.rmtree(unpacked, ignore_errors=True)
    for stale in site.parent.iterdir():  # builds of earlier source trees
        if stale != site:
            shutil.rmtree(stale, ignore_errors=True)
    return site


def use_compiled_build() -> Path:
    """Make this process and its children import the compiled build; returns its directory."""
    if "attesto_asgi" in sys.modules:
        raise RuntimeError("attesto_asgi was imported before the compiled build was put first")
    site = compiled_site()
    sys.path.insert(0, str(site))
    os.environ.update(compiled_env(site))
    return site


def compiled_env(site: Path) -> dict[str, str]:
    """Environment variables under which a child Python imports the build in ``site``: the
    build first, then the checkout (for ``-m benchmarks.*``, ``tests``); never the working
    directory ahead of them (PYTHONSAFEPATH), which would be the checkout's sources. The
    child checks it (``check_build``)."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), *rest]),
        "PYTHONSAFEPATH": "1",
        "ATTESTO_EXPECT_BUILD": "compiled",
        "ATTESTO_COMPILED_SITE": str(site),
    }


def server_cwd() -> Path:
    """Where a server process starts: uvicorn and granian put their working directory first
    on ``sys.path``, so it is the compiled build's directory when the run measures that."""
    site = os.environ.get("ATTESTO_COMPILED_SITE")
    return Path(site) if site else ROOT


def loaded_build() -> str:
    """``compiled`` when every module a wheel compiles was loaded as an extension, else ``pure``."""
    import importlib

    suffixes = [str(importlib.import_module(m).__file__).endswith(".so") for m in compiled_modules()]
    if all(suffixes):
        return "compiled"
    if not any(suffixes):
        return "pure"
    raise RuntimeError("a mix of compiled and pure attesto_asgi modules was loaded")


def check_build() -> str:
    """Fail unless this process loaded the build ``ATTESTO_EXPECT_BUILD`` names (default pure):
    a benchmark server or callgrind run, or the compiled-build test session."""
    loaded = loaded_build()
    wanted = os.environ.get("ATTESTO_EXPECT_BUILD", "pure")
    if loaded != wanted:
        raise RuntimeError(f"this process loaded the {loaded} build of attesto_asgi; {wanted} was expected")
    return loaded
