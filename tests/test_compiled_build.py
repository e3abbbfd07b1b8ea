"""The wheel ``pip install`` builds (the token path compiled with mypyc, hatch_build.py)
passes the same tests as the sources.

The wheel is built from this checkout (benchmarks/build.py: once per source tree) and put
ahead of the checkout on the path of a second pytest session, which checks that it loaded
every compiled module as an extension (tests/conftest.py) before it runs. Tests marked
``pure_only`` patch a module attribute to observe a call, which compiled callers never look
up; everything else runs as it does against the sources, the property tests with a quarter
of their examples (``ATTESTO_TEST_EXAMPLES_DIVISOR``, tests/helpers.py): they ran ~67 of the
110 s this run took on a slow VM, and the sources' run keeps every example.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.build import compiled_env, compiled_modules, compiled_site

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIVISOR = 4
# What a token request runs through, and the stores and end-to-end flows that call into it.
SUITES = [
    "tests/core",
    "tests/asgi",
    "tests/stores",
    "tests/e2e",
    *sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        if p.name not in {"test_quality.py", "test_compiled_build.py"}
    ),
]


@pytest.fixture(scope="module")
def site() -> Path:
    return compiled_site()


def test_the_wheel_compiles_every_listed_module(site: Path) -> None:
    for module in compiled_modules():
        built = list((site / Path(*module.split("."))).parent.glob(module.rsplit(".", 1)[-1] + ".*.so"))
        assert len(built) == 1, module
    # mypyc's shared runtime library sits beside the package.
    assert list(site.glob("*__mypyc.*.so"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the link flags are set for ELF (Linux) builds only")
def test_compiled_functions_call_each_other_directly(site: Path) -> None:
    # hatch_build.py: -fno-semantic-interposition and -Bsymbolic-functions bind the calls
    # between the extension's own functions inside it; without them GCC sends most of them
    # through the PLT (679 of 809 call sites), 4-5% of a request's time on a Zen 4 VM.
    objdump = shutil.which("objdump")
    assert objdump is not None, "objdump (binutils) is needed to read the compiled build"
    (library,) = site.glob("*__mypyc.*.so")
    command = [objdump, "-d", "--no-show-raw-insn", str(library)]
    listing = subprocess.run(command, capture_output=True, text=True, check=True)
    direct = re.findall(r"\s(?:call|callq|bl)\s+[0-9a-f]+ <CPyDef_\w+>", listing.stdout)  # x86-64, arm64
    through_plt = re.findall(r"<CPyDef_\w+@plt>", listing.stdout)
    assert len(direct) > 100, "no direct calls between compiled functions found: is this the group library?"
    assert through_plt == []


def test_the_compiled_build_passes_the_suite(site: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "pythonpath=",
            "-m",
            "not pure_only",
            *SUITES,
        ],
        cwd=ROOT,
        env={**os.environ, **compiled_env(site), "ATTESTO_TEST_EXAMPLES_DIVISOR": str(EXAMPLES_DIVISOR)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
