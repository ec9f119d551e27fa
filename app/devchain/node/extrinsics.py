"""Submitted extrinsics: decode, check signature, nonce and era the way a substrate node does, and turn the
call into the simulated chain's `Call`.

The signing payload is rebuilt from the extrinsic's own bytes (its explicit signed-extension part, between the
signature and the call) plus the implicit parts the metadata's signed extensions name (spec and transaction
version, genesis hash, the era's birth block hash, the metadata hash mode), so any extension layout in the
recorded runtime verifies without hand-written field lists.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from app.chain.client import Certificate
from app.chain.scale import vec_bytes
from app.devchain.calls import Call, CommitWeights, ServeAxon, SetCommitment, SetWeights
from app.devchain.node.codec import Runtime, blake2_256, hexstr, ss58

SIGNED_V4 = 0x84
SR25519 = 0x01


class InvalidTransaction(Exception):
    """Refused at submission (JSON-RPC error 1010), as substrate's transaction pool refuses it."""

    code = 1010

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class UnsupportedCall(Exception):
    """A well-formed call the local node does not model (JSON-RPC error 1002 with the reason)."""

    code = 1002


@dataclass(frozen=True)
class Era:
    period: int = 0  # 0: immortal
    phase: int = 0

    def birth(self, current: int) -> int:
        if not self.period:
            return 0
        return (max(current, self.phase) - self.phase) // self.period * self.period + self.phase

    def death(self, current: int) -> int:
        return self.birth(current) + self.period if self.period else 2**64 - 1


@dataclass(frozen=True)
class SignedExtrinsic:
    data: bytes
    hash: str
    public_key: bytes
    signer: str
    signature: bytes
    era: Era
    nonce: int
    call_module: str
    call_function: str
    call_args: dict[str, Any]
    call_bytes: bytes
    extra: bytes  # the explicit signed-extension bytes, exactly as signed


def _compact_length(data: bytes) -> tuple[int, int]:
    """(value, bytes used) of a SCALE compact integer at the start of `data`."""
    mode = data[0] & 0b11
    if mode == 0:
        return data[0] >> 2, 1
    if mode == 1:
        return int.from_bytes(data[:2], "little") >> 2, 2
    if mode == 2:
        return int.from_bytes(data[:4], "little") >> 2, 4
    size = (data[0] >> 2) + 4
    return int.from_bytes(data[1 : 1 + size], "little"), 1 + size


def _era(data: bytes) -> Era:
    if data[0] == 0:
        return Era()
    encoded = int.from_bytes(data[:2], "little")
    period = 2 << (encoded % (1 << 4))
    quantize = max(period >> 12, 1)
    return Era(period=period, phase=(encoded >> 4) * quantize)


def decode(runtime: Runtime, data: bytes) -> SignedExtrinsic:
    """Decode a signed v4 extrinsic; InvalidTransaction when it is not one this node can check."""
    try:
        length, used = _compact_length(data)
        body = data[used:]
        if length != len(body):
            raise InvalidTransaction("Transaction has a bad length prefix")
        if body[0] != SIGNED_V4:
            raise InvalidTransaction("Unsigned or unsupported extrinsic version")
        if body[1] != 0x00:  # MultiAddress::Id
            raise InvalidTransaction("Unsupported address type")
        public_key = body[2:34]
        if body[34] != SR25519:
            raise InvalidTransaction("Transaction has a bad signature")
        signature = body[35:99]
        decoded = runtime.decode("Extrinsic", data)
    except InvalidTransaction:
        raise
    except Exception as exc:  # scalecodec raises assorted errors on malformed input
        raise InvalidTransaction(f"Could not decode extrinsic: {exc}") from exc
    call_value = {
        "call_module": decoded["call"]["call_module"],
        "call_function": decoded["call"]["call_function"],
        "call_args": {arg["name"]: arg["value"] for arg in decoded["call"]["call_args"]},
    }
    call_bytes = runtime.encode("Call", _encodable(call_value))
    if not body.endswith(call_bytes):
        raise InvalidTransaction("Could not locate the call in the extrinsic")
    extra = body[99 : len(body) - len(call_bytes)]
    return SignedExtrinsic(
        data=data,
        hash=hexstr(blake2_256(data)),
        public_key=public_key,
        signer=ss58(public_key),
        signature=signature,
        era=_era(extra),
        nonce=int(decoded.get("nonce") or 0),
        call_module=call_value["call_module"],
        call_function=call_value["call_function"],
        call_args=call_value["call_args"],
        call_bytes=call_bytes,
        extra=extra,
    )


def _encodable(call: dict[str, Any]) -> dict[str, Any]:
    """The decoded call in the shape scalecodec encodes: a `BoundedVec` (commitment fields) decodes as a list
    but encodes from a one-element composite around it."""
    if (call["call_module"], call["call_function"]) != ("Commitments", "set_commitment"):
        return call
    info = call["call_args"].get("info")
    if not isinstance(info, dict) or not isinstance(info.get("fields"), list):
        return call
    return {**call, "call_args": {**call["call_args"], "info": {**info, "fields": [info["fields"]]}}}


def _is_unit(runtime: Runtime, type_id: int) -> bool:
    try:
        return runtime.encode(f"scale_info::{type_id}", ()) == b""
    except Exception:  # not a unit type: it has fields to encode
        return False


def signing_payload(runtime: Runtime, xt: SignedExtrinsic, genesis_hash: bytes, birth_hash: bytes) -> bytes:
    implicit = b""
    for extension in runtime.metadata.value[1]["V15"]["extrinsic"]["signed_extensions"]:
        name = extension["identifier"]
        if name == "CheckSpecVersion":
            implicit += runtime.spec_version.to_bytes(4, "little")
        elif name == "CheckTxVersion":
            implicit += runtime.transaction_version.to_bytes(4, "little")
        elif name == "CheckGenesis":
            implicit += genesis_hash
        elif name in ("CheckMortality", "CheckEra"):
            implicit += birth_hash
        elif name == "CheckMetadataHash":
            implicit += b"\x00"  # mode Disabled: no metadata hash
        elif not _is_unit(runtime, extension["additional_signed"]):
            raise InvalidTransaction(f"Cannot check signed extension {name}")
    payload = xt.call_bytes + xt.extra + implicit
    # Substrate signs the hash of long payloads.
    return blake2_256(payload) if len(payload) > 256 else payload


def verify_signature(runtime: Runtime, xt: SignedExtrinsic, genesis_hash: bytes, birth_hash: bytes) -> bool:
    from bittensor_wallet import Keypair

    payload = signing_payload(runtime, xt, genesis_hash, birth_hash)
    keypair = Keypair(public_key=xt.public_key.hex(), crypto_type=1)
    try:
        return bool(keypair.verify(payload, xt.signature))
    except Exception:  # a malformed key or signature is simply not valid
        return False


# ------------------------------------------------------------------------------------------- calls
SUPPORTED_CALLS = frozenset(
    {
        "set_mechanism_weights",
        "set_weights",
        "commit_timelocked_mechanism_weights",
        "serve_axon",
        "serve_axon_tls",
    }
)


def _ip(value: int, ip_type: int) -> str:
    if ip_type == 4:
        return str(ipaddress.IPv4Address(value))
    if ip_type == 6:
        return str(ipaddress.IPv6Address(value))
    return f"invalid-ip-type-{ip_type}"


def _commitment_call(args: dict[str, Any]) -> SetCommitment:
    """`Commitments.set_commitment` with one field: Raw bytes, or a timelock ciphertext (which the local node
    stores but can never reveal: revealing needs drand's signature for the round)."""
    info = args["info"]
    fields = info.get("fields", []) if isinstance(info, dict) else []
    if len(fields) != 1 or not isinstance(fields[0], dict) or len(fields[0]) != 1:
        raise UnsupportedCall(
            "pylon localnet models commitments of exactly one field (Raw<n> or TimelockEncrypted)"
        )
    ((kind, value),) = fields[0].items()
    netuid = int(args["netuid"])
    if kind == "TimelockEncrypted":
        return SetCommitment(
            netuid=netuid, data=vec_bytes(value["encrypted"]), reveal_round=int(value["reveal_round"])
        )
    if not kind.startswith("Raw"):
        raise UnsupportedCall(f"pylon localnet does not model commitment fields of kind {kind}")
    return SetCommitment(netuid=netuid, data=vec_bytes(value))


def to_call(xt: SignedExtrinsic) -> tuple[Call, int]:
    """The simulated chain's call for this extrinsic and its mechanism id; UnsupportedCall otherwise."""
    if xt.call_module == "Commitments" and xt.call_function == "set_commitment":
        return _commitment_call(xt.call_args), 0
    if xt.call_module != "SubtensorModule" or xt.call_function not in SUPPORTED_CALLS:
        raise UnsupportedCall(
            f"pylon localnet does not implement {xt.call_module}.{xt.call_function} "
            f"(supported: {', '.join(sorted(SUPPORTED_CALLS))}, Commitments.set_commitment)"
        )
    args = xt.call_args
    mechanism = int(args.get("mecid", 0) or 0)
    if xt.call_function in ("set_mechanism_weights", "set_weights"):
        return (
            SetWeights(
                netuid=int(args["netuid"]),
                uids=tuple(int(u) for u in args["dests"]),
                values=tuple(int(v) for v in args["weights"]),
                version_key=int(args["version_key"]),
            ),
            mechanism,
        )
    if xt.call_function == "commit_timelocked_mechanism_weights":
        # The weights are timelock-encrypted to a drand round; offline they can never be decrypted, so the
        # commit carries no plaintext and its reveal is dropped like a reveal that fails its checks.
        return (
            CommitWeights(
                netuid=int(args["netuid"]),
                uids=(),
                values=(),
                version_key=0,
                commit=vec_bytes(args["commit"]),
            ),
            mechanism,
        )
    certificate = None
    if xt.call_function == "serve_axon_tls":
        raw = vec_bytes(args["certificate"])
        if raw:
            certificate = Certificate(algorithm=raw[0], public_key=raw[1:].hex())
    return (
        ServeAxon(
            netuid=int(args["netuid"]),
            ip=_ip(int(args["ip"]), int(args["ip_type"])),
            port=int(args["port"]),
            protocol=int(args["protocol"]),
            version=int(args["version"]),
            certificate=certificate,
        ),
        mechanism,
    )
