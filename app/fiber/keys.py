"""MLTS key material in the data folder: the miner's RSA key and the symmetric keys validators exchanged.

Both live in `PYLON_DATA_DIR/fiber/` as files of mode 0600, so every worker of an instance sees them:
granian hands a key exchange to one worker, and the validator's next encrypted call may reach another.
(The database would share keys across instances too, but it would put a secret per validator in a table
every component reads; an instance behind a load balancer should pin validators by source address.)
Each worker keeps what it read in memory; a key it has not seen is read from its file on first use.

- `rsa_private_key.pem`: RSA 2048, e=65537 (Fiber's `load_asymmetric_keys`), PKCS#8 PEM, made once by
  whichever worker starts first (linked into place, so two workers never write different keys).
  `pylon fiber rotate-key` replaces it; workers notice the file changed (inode or mtime) at the next
  `GET /public-encryption-key` or exchange. Symmetric keys already exchanged keep working.
- `symmetric/<sha256(hotkey:uuid)>.json`: `{"hotkey", "uuid", "key", "expires_at"}`, the Fernet key as
  Fernet writes it. Expired ones are refused and their files removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import msgspec
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

RSA_FILE = "rsa_private_key.pem"
SYMMETRIC_DIR = "symmetric"
FILE_MODE = 0o600
CACHE_SIZE = 10_000
SWEEP_INTERVAL = 60.0
# Fiber's validators send 32 random bytes (`os.urandom(32)` in `perform_handshake`).
SYMMETRIC_KEY_BYTES = 32
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def fiber_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "fiber"


def _write_private(path: Path, data: bytes) -> Path:
    """Write `data` to a new 0600 file beside `path` and return it (the caller moves it into place)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Path(tmp)


def _new_rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def rotate_rsa_key(data_dir: str | os.PathLike[str]) -> Path:
    """Replace the RSA key with a new one (the CLI's `pylon fiber rotate-key`); returns its path."""
    path = fiber_dir(data_dir) / RSA_FILE
    tmp = _write_private(path, _new_rsa_pem())
    os.replace(tmp, path)
    return path


class RsaKey:
    """The miner's RSA key, read from the data folder (made there once) and re-read when it is rotated."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = fiber_dir(data_dir) / RSA_FILE
        self._stamp: tuple[int, int] | None = None
        self._private: rsa.RSAPrivateKey | None = None
        self.public_pem = ""

    def _ensure_file(self) -> None:
        if self.path.exists():
            return
        tmp = _write_private(self.path, _new_rsa_pem())
        try:
            # Link, not replace: a worker that lost the race keeps the winner's key.
            os.link(tmp, self.path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def current(self) -> rsa.RSAPrivateKey:
        """The key in the file now: loaded at first use and again after a rotation."""
        self._ensure_file()
        stat = self.path.stat()
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if self._private is None or stamp != self._stamp:
            loaded = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{self.path} does not hold an RSA private key")
            self._private, self._stamp = loaded, stamp
            self.public_pem = (
                loaded.public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                .decode()
            )
        return self._private

    def decrypt(self, ciphertext: bytes) -> bytes:
        """RSA-OAEP (MGF1-SHA256, SHA256) as Fiber's `get_symmetric_key_b64_from_payload`; ValueError if
        the ciphertext was not made with this key."""
        return self.current().decrypt(ciphertext, OAEP)


class StoredKey(msgspec.Struct, frozen=True, kw_only=True):
    hotkey: str
    uuid: str
    key: str
    expires_at: float


class SymmetricKeys:
    """Symmetric keys by (validator hotkey, uuid), shared by an instance's workers through the data folder."""

    def __init__(
        self, data_dir: str | os.PathLike[str], ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.folder = fiber_dir(data_dir) / SYMMETRIC_DIR
        self.ttl = ttl
        self.clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[Fernet, float]] = OrderedDict()
        self._last_sweep = 0.0

    def _path(self, hotkey: str, uuid: str) -> Path:
        name = hashlib.sha256(f"{hotkey}:{uuid}".encode()).hexdigest()
        return self.folder / f"{name}.json"

    def add(self, hotkey: str, uuid: str, raw_key: bytes) -> float:
        """Keep `raw_key` (Fiber's 32 bytes) as a Fernet key for `ttl` seconds; returns its expiry."""
        # Fiber's miner: `base64.urlsafe_b64encode(decrypted_symmetric_key)` is the Fernet key.
        key = base64.urlsafe_b64encode(raw_key)
        expires_at = self.clock() + self.ttl
        stored = StoredKey(hotkey=hotkey, uuid=uuid, key=key.decode(), expires_at=expires_at)
        path = self._path(hotkey, uuid)
        os.replace(_write_private(path, msgspec.json.encode(stored)), path)
        self._remember((hotkey, uuid), Fernet(key), expires_at)
        self._sweep()
        return expires_at

    def get(self, hotkey: str, uuid: str) -> Fernet | None:
        """The key's Fernet, or None when it was never exchanged (on this instance) or has expired."""
        now = self.clock()
        entry = self._cache.get((hotkey, uuid))
        if entry is None:
            entry = self._read(hotkey, uuid)
            if entry is None:
                return None
        fernet, expires_at = entry
        if expires_at <= now:
            self._cache.pop((hotkey, uuid), None)
            self._path(hotkey, uuid).unlink(missing_ok=True)
            return None
        return fernet

    def _read(self, hotkey: str, uuid: str) -> tuple[Fernet, float] | None:
        try:
            stored = msgspec.json.decode(self._path(hotkey, uuid).read_bytes(), type=StoredKey)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        if stored.hotkey != hotkey or stored.uuid != uuid:
            return None
        entry = (Fernet(stored.key.encode()), stored.expires_at)
        self._remember((hotkey, uuid), *entry)
        return entry

    def _remember(self, key: tuple[str, str], fernet: Fernet, expires_at: float) -> None:
        self._cache[key] = (fernet, expires_at)
        self._cache.move_to_end(key)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _sweep(self) -> None:
        """Remove expired key files, at most once a minute (on an exchange)."""
        now = self.clock()
        if now - self._last_sweep < SWEEP_INTERVAL:
            return
        self._last_sweep = now
        for path in self.folder.glob("*.json"):
            try:
                if json.loads(path.read_bytes()).get("expires_at", 0) <= now:
                    path.unlink(missing_ok=True)
            except (OSError, ValueError):
                continue
