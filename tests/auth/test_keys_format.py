import hashlib

import pytest

from app.auth.context import Principal
from app.keys.tokens import ID_ALPHABET, ID_LENGTH, CachedKey, hash_secret, mint_key, parse_key


def test_minted_key_has_the_documented_shape() -> None:
    minted = mint_key()
    prefix, key_id, secret = minted.token.split("_", 2)
    assert prefix == "pylon"
    assert key_id == minted.id and len(key_id) == ID_LENGTH and set(key_id) <= set(ID_ALPHABET)
    assert secret == minted.secret and len(secret) >= 32
    assert parse_key(minted.token) == (minted.id, minted.secret)


def test_minted_keys_differ() -> None:
    tokens = {mint_key().token for _ in range(200)}
    ids = {token.split("_")[1] for token in tokens}
    assert len(tokens) == 200 and len(ids) == 200


def test_only_the_sha256_of_the_secret_is_kept() -> None:
    minted = mint_key()
    assert (
        minted.secret_hash == hashlib.sha256(minted.secret.encode()).hexdigest() == hash_secret(minted.secret)
    )
    assert minted.secret not in minted.secret_hash


@pytest.mark.parametrize(
    "token",
    [
        "",
        "pylon",
        "sk-abc",
        "pylon_short_" + "a" * 40,
        "pylon_abcdefghijkl_tooshort",
        "other_abcdefghijkl_" + "a" * 40,
        "pylon_ABCDEFGHIJKL_" + "a" * 40,
        "pylon_abcdefghijkl" + "a" * 40,
    ],
)
def test_malformed_tokens_are_not_parsed(token: str) -> None:
    assert parse_key(token) is None


def test_secrets_with_underscores_parse() -> None:
    token = "pylon_abcdefghijkl_" + "a_b-" * 10
    assert parse_key(token) == ("abcdefghijkl", "a_b-" * 10)


def test_cached_key_matches_only_its_secret() -> None:
    minted = mint_key()
    cached = CachedKey(
        id=minted.id,
        secret_hash=bytes.fromhex(minted.secret_hash),
        principal=Principal(kind="api_key", id=minted.id, scopes=frozenset()),
    )
    assert cached.matches(minted.secret)
    assert not cached.matches(minted.secret[:-1] + ("x" if minted.secret[-1] != "x" else "y"))
    assert not cached.matches("")
