"""A simulated block's extrinsics as a decoder reads them: the `Timestamp.set` inherent, then signed calls.

Call and argument names and types are subtensor's (as its metadata names them, what a SCALE decoder of a real
block returns), values as such a decoder gives them (bytes as 0x-hex, ip as an integer). Lengths are what the
SCALE encoding of a v4 signed sr25519 extrinsic with these arguments would take: an estimate, since the model
never encodes bytes (the local node serves the real bytes it received).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from app.chain.client import BlockExtrinsic, ExtrinsicCall, ExtrinsicCallArg, ExtrinsicResult
from app.devchain.calls import Call, CommitWeights, Extrinsic, ServeAxon, SetCommitment, SetWeights, digest

# Address (1 + 32), signature (1 + 64), era, nonce, tip and metadata-hash mode, and the version byte.
SIGNED_ENVELOPE = 1 + 33 + 65 + 2 + 1 + 1 + 1
# Subtensor's commit-reveal version of timelocked weight commits (v3 is identified by 4).
COMMIT_REVEAL_VERSION = 4


def _compact(value: int) -> int:
    """Bytes a SCALE compact integer takes."""
    if value < 1 << 6:
        return 1
    if value < 1 << 14:
        return 2
    if value < 1 << 30:
        return 4
    return 1 + (value.bit_length() + 7) // 8


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _arg(name: str, type_name: str, value: Any) -> ExtrinsicCallArg:
    return ExtrinsicCallArg(name=name, type=type_name, value=value)


def timestamp_inherent(seed: int, number: int, now_ms: int) -> BlockExtrinsic:
    """Index 0 of every block: the block author's `Timestamp.set(now)`, unsigned."""
    call = ExtrinsicCall(
        call_module="Timestamp", call_function="set", call_args=[_arg("now", "Moment", now_ms)]
    )
    body = 1 + 2 + _compact(now_ms)
    return BlockExtrinsic(
        block_number=number,
        extrinsic_index=0,
        extrinsic_hash=digest("inherent", seed, number),
        extrinsic_length=_compact(body) + body,
        address=None,
        call=call,
    )


def decoded_call(call: Call, receipt: ExtrinsicResult | None = None) -> tuple[ExtrinsicCall, int]:
    """The call as a decoder names it, and the SCALE size of its arguments."""
    if isinstance(call, SetWeights):
        n = len(call.uids)
        return ExtrinsicCall(
            call_module="SubtensorModule",
            call_function="set_weights",
            call_args=[
                _arg("netuid", "NetUid", call.netuid),
                _arg("dests", "Vec<u16>", list(call.uids)),
                _arg("weights", "Vec<u16>", list(call.values)),
                _arg("version_key", "u64", call.version_key),
            ],
        ), 2 + 2 * (_compact(n) + 2 * n) + 8
    if isinstance(call, CommitWeights):
        reveal_round = receipt.reveal_round if receipt and receipt.reveal_round is not None else 0
        return ExtrinsicCall(
            call_module="SubtensorModule",
            call_function="commit_timelocked_weights",
            call_args=[
                _arg("netuid", "NetUid", call.netuid),
                _arg("commit", "BoundedVec<u8, ConstU32<MAX_CRV3_COMMIT_SIZE_BYTES>>", _hex(call.commit)),
                _arg("reveal_round", "u64", reveal_round),
                _arg("commit_reveal_version", "u16", COMMIT_REVEAL_VERSION),
            ],
        ), 2 + _compact(len(call.commit)) + len(call.commit) + 8 + 2
    if isinstance(call, ServeAxon):
        ip, ip_type = _ip(call.ip)
        args = [
            _arg("netuid", "NetUid", call.netuid),
            _arg("version", "u32", call.version),
            _arg("ip", "u128", ip),
            _arg("port", "u16", call.port),
            _arg("ip_type", "u8", ip_type),
            _arg("protocol", "u8", call.protocol),
            _arg("placeholder1", "u8", 0),
            _arg("placeholder2", "u8", 0),
        ]
        size = 2 + 4 + 16 + 2 + 4
        if call.certificate is not None:
            raw = bytes([call.certificate.algorithm]) + bytes.fromhex(call.certificate.public_key)
            args.append(_arg("certificate", "Vec<u8>", _hex(raw)))
            size += _compact(len(raw)) + len(raw)
        function = "serve_axon" if call.certificate is None else "serve_axon_tls"
        return ExtrinsicCall(call_module="SubtensorModule", call_function=function, call_args=args), size
    return _commitment_call(call)


def _ip(text: str) -> tuple[int, int]:
    """(integer, version) of an address; a string that is none (the model accepts any, to refuse it) is
    (0, 0), which the chain refuses as an invalid ip type."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return 0, 0
    return int(address), address.version


def _commitment_call(call: SetCommitment) -> tuple[ExtrinsicCall, int]:
    if call.reveal_round is None:
        field: dict[str, Any] = {f"Raw{len(call.data)}": _hex(call.data)}
        size = 1 + len(call.data)
    else:
        field = {"TimelockEncrypted": {"encrypted": _hex(call.data), "reveal_round": call.reveal_round}}
        size = 1 + _compact(len(call.data)) + len(call.data) + 8
    return ExtrinsicCall(
        call_module="Commitments",
        call_function="set_commitment",
        call_args=[
            _arg("netuid", "NetUid", call.netuid),
            _arg("info", "CommitmentInfo<MaxFields>", {"fields": [field]}),
        ],
    ), 2 + _compact(1) + size


def signed(extrinsic: Extrinsic, number: int, index: int, receipt: ExtrinsicResult | None) -> BlockExtrinsic:
    call, args_size = decoded_call(extrinsic.call, receipt)
    body = SIGNED_ENVELOPE + 2 + args_size
    return BlockExtrinsic(
        block_number=number,
        extrinsic_index=index,
        extrinsic_hash=extrinsic.hash,
        extrinsic_length=_compact(body) + body,
        address=extrinsic.signer,
        call=call,
    )
