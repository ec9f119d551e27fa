"""Fiber's wire format, as rayonlabs/fiber sends and checks it. Every rule names the file it comes from.

Headers (`fiber/constants.py`): `validator-hotkey`, `miner-hotkey`, `nonce`, `signature`,
`symmetric-key-uuid`; endpoints `public-encryption-key` and `exchange-symmetric-key`.

Two signed messages (both signed with the validator's sr25519 hotkey, sent as `0x` + hex,
`fiber/chain/signatures.py: sign_message`):
- signed requests (Fiber 2, `fiber/validator/client.py: get_headers_with_nonce`, checked by
  `fiber/miner/dependencies.py: verify_request`): `f"{nonce}:{miner_hotkey}:{sha256(body).hexdigest()}"`;
- MLTS (`fiber/encrypted/validator/client.py: get_headers_with_nonce`, checked by
  `fiber/encrypted/miner/dependencies.py: verify_request`): `f"{nonce}:{miner_hotkey}:{symmetric_key_uuid}"`,
  on the key exchange and on every encrypted call.

Nonces (`fiber/validator/generate_nonce.py`): `f"{time.time_ns()}_{10 random letters or digits}"`. The
miner (`fiber/encrypted/miner/security/nonce_management.py: NonceManager.nonce_is_valid`) refuses a nonce
it has seen, one whose part before `_` is not an integer or is above 10**20, and one whose timestamp is
more than `NONCE_WINDOW_NS` (120 s, `miner_constants.py`) in the past or in the future.

MLTS (`fiber/encrypted/validator/handshake.py`, `fiber/encrypted/miner/endpoints/handshake.py`,
`.../security/encryption.py`): the validator reads `GET /public-encryption-key` (`{"public_key": PEM
SubjectPublicKeyInfo, "timestamp": time.time(), "hotkey": ss58}`, `fiber/miner/core/models/encryption.py:
PublicKeyResponse`), draws 32 random bytes and a uuid (`os.urandom(32).hex()`), and posts
`{"encrypted_symmetric_key": base64(RSA-OAEP(MGF1-SHA256, SHA256) of the 32 bytes)}` to
`/exchange-symmetric-key`, signed; the miner keeps `Fernet(urlsafe_b64encode(bytes))` under (validator
hotkey, uuid) for 5 hours (`SymmetricKeyInfo.create`). Encrypted calls carry `fernet.encrypt(json.dumps(
payload).encode())` as an `application/octet-stream` body, the payload with an extra `"nonce"` key
(`make_non_streamed_post`).
"""

from __future__ import annotations

import hashlib
import re

H_VALIDATOR = "validator-hotkey"
H_MINER = "miner-hotkey"
H_NONCE = "nonce"
H_SIGNATURE = "signature"
H_KEY_UUID = "symmetric-key-uuid"
PUBLIC_KEY_PATH = "/public-encryption-key"
EXCHANGE_PATH = "/exchange-symmetric-key"
# The key Fiber's client adds to every encrypted JSON payload; Pylon drops it before routing the body.
BODY_NONCE = "nonce"

# ASGI header names (lowercase bytes).
B_VALIDATOR = H_VALIDATOR.encode()
B_SIGNATURE = H_SIGNATURE.encode()
B_KEY_UUID = H_KEY_UUID.encode()
FIBER_HEADERS = frozenset({B_VALIDATOR, H_MINER.encode(), H_NONCE.encode(), B_SIGNATURE, B_KEY_UUID})

SIGNATURE_RE = re.compile(r"^(0x)?[0-9a-fA-F]{128}$")
# Fiber's uuids are 64 hex characters; any short token of these characters is accepted.
KEY_UUID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# `nonce_is_valid`: a timestamp above this is refused as malformed.
NONCE_TIMESTAMP_MAX = 10**20
NONCE_MAX_LENGTH = 128


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signed_message(nonce: str, miner_hotkey: str, body: bytes) -> str:
    """The message of a Fiber-signed request."""
    return f"{nonce}:{miner_hotkey}:{body_hash(body)}"


def mlts_message(nonce: str, miner_hotkey: str, symmetric_key_uuid: str) -> str:
    """The message of a key exchange or an encrypted call."""
    return f"{nonce}:{miner_hotkey}:{symmetric_key_uuid}"


def nonce_timestamp_ns(nonce: str) -> int | None:
    """The nonce's timestamp in nanoseconds; None when it is not Fiber's `<int>_<random>` shape."""
    if not nonce or len(nonce) > NONCE_MAX_LENGTH:
        return None
    head = nonce.split("_", 1)[0]
    if not head.isascii() or not head.isdigit():
        return None
    value = int(head)
    return None if value > NONCE_TIMESTAMP_MAX else value
