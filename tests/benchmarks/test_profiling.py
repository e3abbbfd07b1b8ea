"""``python -m benchmarks.profiling``: a call tree of the hot path, from real requests."""

from __future__ import annotations

from pathlib import Path

from benchmarks.env import Env
from benchmarks.profiling import main, profile
from benchmarks.scenarios import Scenario


def test_the_profile_shows_the_token_endpoint_s_own_steps(tmp_path: Path) -> None:
    env = Env()
    try:
        # ~2,000 samples: at 300 requests and one sample a millisecond (~12 samples in all),
        # a step of 2% of a request, as the form is, went unsampled in one run of the suite.
        path = profile(
            Scenario("attesto", "authorization_code", "memory"), env, tmp_path, requests=2000, interval=0.0001
        )
    finally:
        env.close()
    assert path == tmp_path / "attesto-authorization_code-memory.txt"
    text = path.read_text()
    # Samples fell in the middleware, the grant and the signature: the requests really ran.
    for step in ("AttestoMiddleware._outcome", "authorization_code.py", "mint_access_token", "parse_form"):
        assert step in text


def test_the_command_writes_text_and_html(tmp_path: Path) -> None:
    main(["--grant", "client_credentials", "--requests", "200", "--out", str(tmp_path), "--html"])
    assert (tmp_path / "attesto-client_credentials-memory.txt").read_text()
    assert "<html" in (tmp_path / "attesto-client_credentials-memory.html").read_text().lower()
