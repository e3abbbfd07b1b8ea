"""The example provider's user file: scrypt hashes, constant-time checks, no enumeration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from examples.provider.users import UserDirectory, hash_password, verify_password
from tests.examples.support import ALICE, ALICE_SUB, ROOT


def test_hash_round_trip_and_salting() -> None:
    a, b = hash_password("s3cret"), hash_password("s3cret")
    assert a != b  # a fresh salt each time
    assert a.startswith("scrypt$14$8$1$")
    assert verify_password("s3cret", a)
    assert not verify_password("s3cret ", a)
    assert not verify_password("", a)


def test_malformed_or_foreign_hashes_never_verify() -> None:
    for encoded in ("", "scrypt$", "bcrypt$14$8$1$AA$AA", "scrypt$40$8$1$AA$AA", "scrypt$x$8$1$AA$AA", "plain"):
        assert not verify_password("anything", encoded)


def test_shipped_users_file() -> None:
    users = UserDirectory.load(ROOT / "examples/provider/users.json")
    alice = users.authenticate(*ALICE)
    assert alice is not None
    assert alice.sub == ALICE_SUB
    assert users.authenticate("alice", "wrong") is None
    assert users.authenticate("nobody", ALICE[1]) is None
    assert users.by_sub(ALICE_SUB) == alice
    assert alice.claims(("openid",)) == {"sub": ALICE_SUB}
    assert alice.claims(("openid", "profile", "email")) == {
        "sub": ALICE_SUB,
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "email": "alice@example.org",
        "email_verified": True,
    }
    assert "password" not in repr(alice)
    assert "scrypt" not in repr(alice)


def test_hash_command_prints_a_usable_hash(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.provider.users", "new password"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    (tmp_path / "users.json").write_text(
        json.dumps({"carol": {"sub": "c-1", "password": out, "name": "Carol", "email": "carol@example.org"}})
    )
    carol = UserDirectory.load(tmp_path / "users.json").authenticate("carol", "new password")
    assert carol is not None
    assert carol.sub == "c-1"
    assert carol.email_verified is False
