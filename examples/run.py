"""``python -m examples.run``: start the example provider, relying party and reports API on
loopback, wait until each answers, and print the URL to open. Ctrl-C stops all three.

Ports 8000 / 8001 / 8002 when free (else any free loopback port); ``ATTESTO_STORE`` picks
the provider's store (default: SQLite in ``.attesto-demo/``; ``redis://127.0.0.1:6379/0``
for Redis). Secrets for the clients are generated fresh for each run.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from types import FrameType

__all__ = ["main"]

DEMO_USER = ("alice", "alice-demo-password")


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free loopback port")


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # loopback only
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    provider_port = free_port(int(os.environ.get("PROVIDER_PORT", "8000")))
    rp_port = free_port(int(os.environ.get("RP_PORT", "8001")))
    api_port = free_port(int(os.environ.get("API_PORT", "8002")))
    provider_url = f"http://127.0.0.1:{provider_port}"
    rp_url = f"http://127.0.0.1:{rp_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    env = os.environ | {
        "PROVIDER_PORT": str(provider_port),
        "RP_PORT": str(rp_port),
        "API_PORT": str(api_port),
        "DEMO_PROVIDER_URL": provider_url,
        "DEMO_RP_URL": rp_url,
        "DEMO_API_URL": api_url,
        "DEMO_RP_SECRET": os.environ.get("DEMO_RP_SECRET") or secrets.token_urlsafe(32),
        "DEMO_API_CLIENT_SECRET": os.environ.get("DEMO_API_CLIENT_SECRET") or secrets.token_urlsafe(32),
        "PYTHONUNBUFFERED": "1",
    }
    procs: list[subprocess.Popen[bytes]] = []

    def stop(signum: int | None = None, frame: FrameType | None = None) -> None:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if signum is not None:
            sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        for module, url in (
            ("examples.provider", f"{provider_url}/.well-known/openid-configuration"),
            ("examples.relying_party", f"{rp_url}/"),
            ("examples.fastapi_api", f"{api_url}/docs"),
        ):
            proc = subprocess.Popen([sys.executable, "-m", module], env=env)
            procs.append(proc)
            wait_until_up(url, proc)
        print(
            f"\nProvider {provider_url}  ·  relying party {rp_url}  ·  reports API {api_url}\n"
            f"Open {rp_url}/ and sign in as {DEMO_USER[0]} / {DEMO_USER[1]}  (Ctrl-C stops)\n",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a server exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"could not start the demo: {exc}", file=sys.stderr)
        return 1
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
