"""Wheel build hook: compile the token path with mypyc (pure-Python fallback).

The modules listed under ``[tool.hatch.build.targets.wheel.hooks.custom] compile`` in
pyproject.toml run on every token request; mypyc turns them into C extensions beside the
same ``.py`` sources (as black and mypy ship): ~15% fewer instructions a request, 20-25%
less time on an Intel Xeon VM, 10-25% less on a Zen 5 AMD EPYC one; on a Zen 4 one about
as much as the sources on client_credentials and code redemption, ~5% more on refresh
(benchmarks/README.md, "Compiled and pure"). Editable installs are never compiled: a
developer's edits to a ``.py`` file must take effect, and a stale extension module would
shadow them.

``ATTESTO_ASGI_COMPILE``: ``auto`` (default) compiles and falls back to a pure-Python wheel,
with a warning, when there is no C compiler; ``1`` makes a failed compile fail the build
(the benchmarks and the compiled-build tests ask for this); ``0`` builds a pure wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# Run by a separate interpreter from a temporary directory, so that setuptools never reads
# this project's pyproject.toml and mypy's cache stays out of the source tree.
# On ELF platforms the extension's own functions are bound inside it: with -fPIC and default
# symbol visibility, GCC calls every one of them through the PLT (nothing may interpose on
# them, but the compiler must assume something could) and inlines none across functions.
# -fno-semantic-interposition (as CPython builds libpython) and -Bsymbolic-functions make
# those calls direct: 4-5% more tokens a second in-process on a Zen 4 AMD EPYC VM, five
# interleaved pairs (benchmarks/README.md, "Compiled and pure").
_SETUP = """
import sys

from mypyc.build import mypycify
from setuptools import setup

extensions = mypycify(["--ignore-missing-imports", *{paths!r}], opt_level="3", target_dir={c_dir!r})
if sys.platform.startswith("linux"):
    for ext in extensions:
        ext.extra_compile_args = [*ext.extra_compile_args, "-fno-semantic-interposition"]
        ext.extra_link_args = [*ext.extra_link_args, "-Wl,-Bsymbolic-functions"]
setup(
    name="attesto-asgi-compiled",
    ext_modules=extensions,
    script_args=["build_ext", "--build-lib", {lib!r}, "--build-temp", {tmp!r}],
)
"""


class CompileHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        mode = os.environ.get("ATTESTO_ASGI_COMPILE", "auto")
        if version == "editable" or mode == "0":
            return
        self._work = tempfile.TemporaryDirectory(prefix="attesto-mypyc-")
        try:
            built = _compile(Path(self.root), self.config.get("compile", []), Path(self._work.name))
        except OSError as exc:
            if mode == "1":
                raise
            warnings.warn(f"attesto-asgi: mypyc compile failed, building a pure-Python wheel: {exc}", stacklevel=1)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["force_include"].update(built)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            work.cleanup()


def _compile(root: Path, modules: list[str], work: Path) -> dict[str, str]:
    """Compile ``modules`` (paths relative to ``root``); map each built file to its wheel path."""
    lib = work / "lib"
    setup_file = work / "setup.py"
    paths = [str(root / m) for m in modules]
    setup_file.write_text(_SETUP.format(paths=paths, c_dir=str(work / "c"), lib=str(lib), tmp=str(work / "tmp")))
    done = subprocess.run(  # noqa: S603 (this interpreter, a file this hook wrote)
        [sys.executable, str(setup_file)],
        cwd=work,
        env={**os.environ, "MYPY_CACHE_DIR": str(work / "mypy-cache")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if done.returncode:
        raise OSError(f"mypyc exited with {done.returncode}:\n{done.stdout[-4000:]}")
    return {str(f): str(f.relative_to(lib)) for f in lib.rglob("*.so")}
