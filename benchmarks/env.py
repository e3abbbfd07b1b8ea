"""The run's environment: a scratch directory, a private Redis, wrk, and the machine.

Redis: a private ``redis-server`` on a free loopback port, no persistence, stopped by its
pid when the run ends. wrk: the Debian package, installed with apt-get when missing.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = [
    "Env",
    "RedisServer",
    "cpu_name",
    "ensure_apt_tool",
    "ensure_store_backends",
    "ensure_wrk",
    "free_port",
    "machine",
]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def ensure_apt_tool(binary: str, package: str) -> str:
    """The path of ``binary``, installing its Debian ``package`` when it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{binary} is missing and apt-get is not available: install {package}")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print(f"installing {binary} (apt-get install -y {package})...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    if subprocess.run([*sudo, "apt-get", "install", "-y", "-q", package], check=False, **quiet).returncode:  # type: ignore[call-overload]
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, **quiet)  # type: ignore[call-overload]
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", package], check=True, **quiet)  # type: ignore[call-overload]
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"{package} did not install")
    return found


def ensure_wrk() -> str:
    """The path of wrk (https://github.com/wg/wrk), installing the Debian package when missing."""
    return ensure_apt_tool("wrk", "wrk")


def ensure_store_backends(stores: list[str]) -> list[str]:
    """Install this repository's store distributions (stores/<name>) that are missing, so a
    fresh checkout benchmarks every store in one command. Returns what was installed."""
    from attesto_asgi.store import installed_backends

    have = installed_backends()
    installed = []
    for name in stores:
        project = ROOT / "stores" / name
        if name in have or not (project / "pyproject.toml").exists():
            continue
        print(f"installing the {name} store backend (pip install -e {project})...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(project)], check=True)
        installed.append(name)
    if installed:
        import importlib

        importlib.invalidate_caches()
    return installed


class RedisServer:
    """A private redis-server on a free loopback port; ``stop()`` ends it by its pid."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--databases",
                "64",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, 10, self.proc)
        self._next_db = 0

    def url(self) -> str:
        """A fresh, empty database of this server."""
        db = self._next_db % 64
        self._next_db += 1
        self.command("-n", str(db), "FLUSHDB")
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], check=True, capture_output=True, text=True, timeout=60
        )
        return out.stdout.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Env:
    """Scratch directory and services for one run; store URLs handed out fresh."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="attesto-bench-")
        self.dir = Path(self._tmp.name)
        self._redis: RedisServer | None = None
        self._n = 0

    @property
    def redis(self) -> RedisServer:
        if self._redis is None:
            self._redis = RedisServer(self.dir)
        return self._redis

    def store_url(self, store: str) -> str:
        self._n += 1
        if store == "memory":
            return "memory://"
        if store == "sqlite":
            return f"sqlite:///{self.dir}/bench-{self._n}.db"
        if store == "redis":
            return self.redis.url()
        raise ValueError(store)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.stop()
        self._tmp.cleanup()


def cpu_name(cpuinfo: str, fallback: str) -> str:
    """The first CPU of a ``/proc/cpuinfo`` text: its model name, then family and model, and
    whether it has MULX/ADX (OpenSSL's fast P-256 path). Hosts name their VMs' CPUs vaguely
    ("AMD EPYC"), and generations of one name ran these benchmarks at different speeds."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block ends at its blank line
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or fallback
    if "cpu family" not in fields or "model" not in fields:
        return name
    flags = set(fields.get("flags", "").split())
    adx = "MULX/ADX" if {"bmi2", "adx"} <= flags else "no MULX/ADX"
    return f"{name} (family {fields['cpu family']}, model {fields['model']}, {adx})"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        cpu = cpu_name(Path("/proc/cpuinfo").read_text(), cpu)
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for dist in (
        "attesto-asgi",
        "aioauth",
        "authlib",
        "joserfc",
        "cryptography",
        "msgspec",
        "uvicorn",
        "granian",
        "uvloop",
        "httptools",
        "redis",
    ):
        with contextlib.suppress(PackageNotFoundError):
            versions[dist] = version(dist)
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_at_start": [round(x, 2) for x in load],
        "versions": versions,
    }
