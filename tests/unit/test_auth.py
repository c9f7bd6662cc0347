"""Bearer tokens (rpc/auth.py): parsing the metadata, verifying by digest, token files; refusals
never repeat the token."""

from __future__ import annotations

import pytest

from inspatio_world.refusals import Unauthenticated
from inspatio_world.rpc.auth import (SERVICE_PRINCIPAL, TokenVerifier, bearer_token, current_principal, principal_set,
                                     token_digest)
from inspatio_world.rpc.tokens import read_token_file

TOKEN = "s3cr3t-Token_value"


@pytest.mark.parametrize("metadata", [
    [("authorization", f"Bearer {TOKEN}")], [("Authorization", f"bearer {TOKEN}")], [("authorization", f"  Bearer   {TOKEN} ")],
    [("x-other", "1"), ("authorization", f"Bearer {TOKEN}".encode())],
])  # fmt: skip
def test_the_bearer_token_is_read_from_the_metadata(metadata):
    assert bearer_token(metadata) == TOKEN


@pytest.mark.parametrize("metadata, says", [
    (None, "no 'authorization'"), ([], "no 'authorization'"), ([("x-token", TOKEN)], "no 'authorization'"),
    ([("authorization", f"Basic {TOKEN}")], "malformed"), ([("authorization", "Bearer")], "malformed"),
    ([("authorization", TOKEN)], "malformed"), ([("authorization", f"Bearer {TOKEN} {TOKEN}")], "malformed"),
    ([("authorization", f"Bearer {TOKEN}")] * 2, "more than one"),
])  # fmt: skip
def test_missing_or_malformed_metadata_is_unauthenticated_saying_how_to_pass_a_token(metadata, says):
    with pytest.raises(Unauthenticated) as caught:
        bearer_token(metadata)
    message = str(caught.value)
    assert says in message and TOKEN not in message
    if says != "more than one":
        assert "--token-file" in message and "INSPATIO_TOKEN_FILE" in message and "INSPATIO_TOKEN" in message


def test_a_verifier_maps_each_token_to_its_principal_and_refuses_others():
    verifier = TokenVerifier([(token_digest("a-token"), "acme"), (token_digest("b-token"), "bravo"),
                              (token_digest("a-second-token"), "acme")])  # fmt: skip
    assert [verifier.verify(t) for t in ("a-token", "b-token", "a-second-token")] == ["acme", "bravo", "acme"]
    for wrong in ("c-token", token_digest("a-token"), "a-token ", ""):
        with pytest.raises(Unauthenticated) as caught:
            verifier.verify(wrong)
        assert wrong not in str(caught.value) or not wrong
    assert verifier.authenticate([("authorization", "Bearer b-token")]) == "bravo"


@pytest.mark.parametrize("entries", [[], [("ABC", "x")], [(token_digest("t").upper(), "x")]])
def test_a_verifier_needs_well_formed_digests(entries):
    with pytest.raises(ValueError):
        TokenVerifier(entries)


def test_token_files(tmp_path):
    (tmp_path / "token").write_text(f"{TOKEN}\n")
    assert read_token_file(str(tmp_path / "token"), "the token file") == TOKEN
    assert TokenVerifier.for_token_file(tmp_path / "token").verify(TOKEN) == SERVICE_PRINCIPAL
    for name, text in (("empty", "\n"), ("two", f"{TOKEN} other")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match="token") as caught:
            read_token_file(str(tmp_path / name), "the token file")
        assert TOKEN not in str(caught.value)
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(str(tmp_path / "missing"), "the token file")


def test_the_principal_is_set_for_the_call_only():
    assert current_principal() is None
    with principal_set("acme"):
        assert current_principal() == "acme"
    assert current_principal() is None
