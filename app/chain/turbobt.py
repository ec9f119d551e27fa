"""The real chain: a `ChainClient` over turbobt for finney, test, archive or any ws(s):// node.

turbobt's pitfalls (measured against a subtensor node), and what this adapter does about each:
- `Bittensor` caches results by request parameters, so a call without an explicit block hash returns a
  stale "latest" forever: every read here resolves the block first and passes its hash.
- Nothing in turbobt has a timeout on extrinsics: every call is bounded by `call_timeout`, every
  extrinsic by `extrinsic_timeout`.
- `block(n).get()` for a future block returns a block whose hash is None: that is `BlockNotFound`.
- A dropped connection stays dropped: on a transport error the connection is closed and reopened on the
  next call, after an exponential backoff.
- The default `version_key` is 9003000: callers pass theirs explicitly.
- `commitments.fetch` maps a `Raw0` field ([] once decoded) and a ciphertext that happens to be UTF-8
  (decoded as text) wrongly: `CommitmentOf` is read raw and mapped here (`commitment_from_turbobt`).
- `commitments.set`/`set_revealed` return neither the extrinsic nor its hash: the adapter submits
  `Commitments.set_commitment` itself (with bittensor_drand's ciphertext for timelocked ones).
- `weights.fetch_pending` parses each timelocked commit as hex, and fails on a ciphertext that happens to
  be UTF-8 (decoded as text): `TimelockedWeightCommits` is read raw, the ciphertext left aside.
- Nothing wraps alpha prices: they come from the runtime's `SwapRuntimeApi.current_alpha_price` per subnet
  (the price of V2 and V3 pools alike; root is 1 TAO), the subnets from `NetworksAdded`'s keys.

Blocks older than `archive_blocks_cutoff` behind the head are read from the archive node; a main node that
answers "unknown block" / pruned state for a younger block also falls back to the archive
(`pylon_bittensor_fallback_total{reason,operation}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import structlog
from prometheus_client import Counter, Histogram

from app.chain.client import (
    DEFAULT_VERSION_KEY,
    AxonInfo,
    BlockExtrinsic,
    BlockInfo,
    BlockNotFound,
    Certificate,
    ChainClient,
    ChainError,
    ChainTimeout,
    ChainUnavailable,
    Commitment,
    EvmAssociation,
    ExtrinsicCall,
    ExtrinsicCallArg,
    ExtrinsicFailed,
    ExtrinsicResult,
    Neuron,
    RevealedCommitment,
    Signer,
    Stakes,
    SubnetHyperparams,
    SubnetState,
    UnknownNetuid,
    WeightCommit,
    float_to_u16,
    hotkey_of,
)
from app.chain.scale import vec_bytes

log = structlog.get_logger(__name__)
T = TypeVar("T")

OPERATION_DURATION = Histogram(
    "pylon_bittensor_operation_duration_seconds",
    "Duration of chain operations.",
    ("operation", "status", "netuid"),
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
FALLBACK_TOTAL = Counter(
    "pylon_bittensor_fallback_total", "Reads routed to the archive node.", ("reason", "operation")
)

RAO = 1_000_000_000
# The Commitments pallet's `Data::Raw0..Raw128`: no Raw field holds more.
MAX_RAW_COMMITMENT = 128
# What bittensor_drand assumes to turn blocks until reveal into a drand round.
BLOCK_SECONDS = 12.0
# Runtime calls in flight at once when reading every subnet's price.
PRICE_CONCURRENCY = 16
# Mapped to a reconnect: what a dropped websocket or a refused connection raises.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, OSError, EOFError)
_NO_SUCH_ERROR = type("_NoSuchError", (Exception,), {})


def _websocket_errors() -> tuple[type[BaseException], ...]:
    try:
        from websockets.exceptions import WebSocketException

        return (WebSocketException,)
    except ImportError:  # pragma: no cover - websockets is a turbobt dependency
        return ()


def _turbobt_error(name: str) -> type[BaseException]:
    from turbobt.substrate import exceptions

    found: type[BaseException] = getattr(exceptions, name, _NO_SUCH_ERROR)
    return found


# ---------------------------------------------------------------------------------------- translation
def stakes_by_hotkey(state: Mapping[str, Any]) -> dict[str, Stakes]:
    """Subnet state's rao columns as Pylon's `Stakes` (alpha, TAO, total in units, not rao)."""
    return {
        hotkey: Stakes(alpha=alpha / RAO, tao=tao / RAO, total=total / RAO)
        for hotkey, alpha, tao, total in zip(
            state["hotkeys"], state["alpha_stake"], state["tao_stake"], state["total_stake"], strict=False
        )
    }


def neuron_from_turbobt(neuron: Any, stakes: Stakes | None) -> Neuron:
    """A turbobt `Neuron` (already in float units) as Pylon's `Neuron`."""
    return Neuron(
        uid=neuron.uid,
        coldkey=neuron.coldkey,
        hotkey=neuron.hotkey,
        active=bool(neuron.active),
        axon_info=AxonInfo(
            ip=str(neuron.axon_info.ip),
            port=int(neuron.axon_info.port),
            protocol=int(neuron.axon_info.protocol),
        ),
        stake=float(neuron.stake),
        rank=float(neuron.rank),
        emission=float(neuron.emission),
        incentive=float(neuron.incentive),
        consensus=float(neuron.consensus),
        trust=float(neuron.trust),
        validator_trust=float(neuron.validator_trust),
        dividends=float(neuron.dividends),
        last_update=int(neuron.last_update),
        validator_permit=bool(neuron.validator_permit),
        pruning_score=int(neuron.pruning_score),
        stakes=stakes or Stakes(alpha=0.0, tao=0.0, total=0.0),
    )


_HYPERPARAM_FIELDS = {f for f in SubnetHyperparams.__struct_fields__}


def hyperparams_from_turbobt(params: Mapping[str, Any]) -> SubnetHyperparams:
    """The runtime API's hyperparameters (unknown fields of newer runtimes are ignored)."""
    known = {k: v for k, v in params.items() if k in _HYPERPARAM_FIELDS}
    for flag in ("commit_reveal_weights_enabled", "registration_allowed", "liquid_alpha_enabled"):
        if flag in known:
            known[flag] = bool(known[flag])
    return SubnetHyperparams(**known)


def subnet_state_from_turbobt(netuid: int, state: Mapping[str, Any]) -> SubnetState:
    return SubnetState(
        netuid=netuid,
        hotkeys=list(state["hotkeys"]),
        coldkeys=list(state["coldkeys"]),
        active=[bool(a) for a in state.get("active", [])],
        validator_permit=[bool(v) for v in state.get("validator_permit", [])],
        alpha_stake=[a / RAO for a in state["alpha_stake"]],
        tao_stake=[t / RAO for t in state["tao_stake"]],
        total_stake=[t / RAO for t in state["total_stake"]],
    )


def certificate_from_turbobt(certificate: Mapping[str, Any]) -> Certificate:
    return Certificate(
        algorithm=int(certificate["algorithm"]),
        public_key=str(certificate["public_key"]).removeprefix("0x"),
    )


def commitment_from_turbobt(hotkey: str, registration: Mapping[str, Any]) -> Commitment | None:
    """A `CommitmentOf` registration as Pylon's `Commitment` (its first data field; None if it has none)."""
    fields = registration.get("info", {}).get("fields", [])
    field = next((f for f in fields if isinstance(f, dict)), None)
    if not field:
        return None
    if "TimelockEncrypted" in field:
        sealed = field["TimelockEncrypted"]
        return Commitment(
            hotkey=hotkey,
            block=int(registration["block"]),
            data=vec_bytes(sealed["encrypted"]),
            kind="timelock_encrypted",
            reveal_round=int(sealed["reveal_round"]),
        )
    return Commitment(
        hotkey=hotkey, block=int(registration["block"]), data=vec_bytes(next(iter(field.values())))
    )


def _ss58(address: Any) -> str | None:
    """A decoded extrinsic's signer: ss58 already, a 0x account id, or a MultiAddress `{"Id": ...}`."""
    if isinstance(address, dict):
        address = address.get("Id")
    if not address:
        return None
    text = str(address)
    if text.startswith("0x"):
        import scalecodec.utils.ss58

        return str(scalecodec.utils.ss58.ss58_encode(text))
    return text


def extrinsic_from_turbobt(number: int, index: int, extrinsic: Mapping[str, Any]) -> BlockExtrinsic:
    call = extrinsic.get("call") or {}
    return BlockExtrinsic(
        block_number=number,
        extrinsic_index=index,
        extrinsic_hash=str(extrinsic.get("extrinsic_hash") or ""),
        extrinsic_length=int(extrinsic.get("extrinsic_length") or 0),
        address=_ss58(extrinsic.get("address")),
        call=ExtrinsicCall(
            call_module=str(call.get("call_module", "")),
            call_function=str(call.get("call_function", "")),
            call_args=[
                ExtrinsicCallArg(name=str(arg["name"]), type=str(arg["type"]), value=arg["value"])
                for arg in call.get("call_args", [])
            ],
        ),
    )


def _raw_commitment_info(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_RAW_COMMITMENT:
        # There is no Raw129 variant to encode: refuse here rather than with an encoder's error.
        raise ValueError(
            f"commitment data is {len(data)} bytes; a Raw field holds at most {MAX_RAW_COMMITMENT}"
        )
    return {"fields": [[{f"Raw{len(data)}": bytes(data)}]]}


# -------------------------------------------------------------------------------------------- client
class TurbobtChainClient(ChainClient):
    """`ChainClient` over turbobt's `Bittensor`, with an archive node for old blocks."""

    def __init__(
        self,
        network: str,
        *,
        archive_network: str | None = "archive",
        archive_blocks_cutoff: int = 300,
        call_timeout: float = 10.0,
        extrinsic_timeout: float = 60.0,
        connect: Callable[[str], Awaitable[Any]] | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        """`connect(uri)` opens a turbobt `Bittensor` (tests pass a factory of fakes)."""
        self.network = network
        self.archive_network = archive_network or None
        self.archive_blocks_cutoff = archive_blocks_cutoff
        self.call_timeout = call_timeout
        self.extrinsic_timeout = extrinsic_timeout
        self.poll_interval = 2.0
        self._connect = connect or self._open_bittensor
        self.backoff = backoff
        self._connections: dict[str, Any] = {}
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_head: BlockInfo | None = None

    @classmethod
    def from_settings(cls, chain: Any) -> TurbobtChainClient:
        return cls(
            chain.network,
            archive_network=chain.archive_network,
            archive_blocks_cutoff=chain.archive_blocks_cutoff,
            call_timeout=chain.call_timeout,
            extrinsic_timeout=chain.extrinsic_timeout,
        )

    @staticmethod
    async def _open_bittensor(uri: str) -> Any:
        from turbobt import Bittensor

        client = Bittensor(uri)
        await client.__aenter__()
        return client

    # -------------------------------------------------------------------------------- connections
    async def _bittensor(self, uri: str) -> Any:
        connection = self._connections.get(uri)
        if connection is not None:
            return connection
        lock = self._locks.setdefault(uri, asyncio.Lock())
        async with lock:
            connection = self._connections.get(uri)
            if connection is not None:
                return connection
            wait = self._retry_at.get(uri, 0.0) - time.monotonic()
            if wait > 0:
                raise ChainUnavailable(f"{uri}: reconnecting in {wait:.1f}s after a dropped connection")
            try:
                connection = await asyncio.wait_for(self._connect(uri), self.call_timeout)
            except Exception as exc:
                self._schedule_retry(uri)
                raise ChainUnavailable(f"{uri}: cannot connect ({type(exc).__name__}: {exc})") from exc
            self._connections[uri] = connection
            self._failures.pop(uri, None)
            log.info("chain_connected", uri=uri)
            return connection

    def _schedule_retry(self, uri: str) -> None:
        failures = self._failures.get(uri, 0) + 1
        self._failures[uri] = failures
        delay = min(self.backoff[0] * 2 ** (failures - 1), self.backoff[1])
        self._retry_at[uri] = time.monotonic() + delay

    async def _drop(self, uri: str) -> None:
        connection = self._connections.pop(uri, None)
        self._schedule_retry(uri)
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)

    async def _call(
        self,
        operation: str,
        func: Callable[[Any], Awaitable[T]],
        *,
        netuid: int | None = None,
        uri: str | None = None,
        limit: float | None = None,
        raw_errors: bool = False,
    ) -> T:
        """Run one turbobt call on a connection, bounded, measured, with transport errors mapped."""
        uri = uri or self.network
        started = time.perf_counter()
        status = "error"
        try:
            connection = await self._bittensor(uri)
            try:
                result = await asyncio.wait_for(func(connection), limit or self.call_timeout)
            except TimeoutError as exc:
                raise ChainTimeout(
                    f"{operation}: no answer from {uri} within {limit or self.call_timeout}s"
                ) from exc
            except (*TRANSPORT_ERRORS, *_websocket_errors()) as exc:
                await self._drop(uri)
                raise ChainUnavailable(
                    f"{operation}: connection to {uri} lost ({type(exc).__name__})"
                ) from exc
            except ChainError:
                raise
            except Exception as exc:
                if raw_errors or _is_pruned_state(exc):
                    raise
                raise ChainError(f"{operation}: {type(exc).__name__}: {exc}") from exc
            status = "success"
            return result
        finally:
            OPERATION_DURATION.labels(operation, status, "" if netuid is None else str(netuid)).observe(
                time.perf_counter() - started
            )

    # --------------------------------------------------------------------------------------- routing
    def uri_for(self, number: int, head: int | None) -> str:
        """The main node for recent blocks, the archive node for blocks older than the cut-off."""
        if self.archive_network and head is not None and head - number > self.archive_blocks_cutoff:
            return self.archive_network
        return self.network

    async def _read(
        self,
        operation: str,
        netuid: int | None,
        block: BlockInfo | None,
        func: Callable[[Any, str], Awaitable[T]],
    ) -> tuple[BlockInfo, T]:
        block = block or await self.head()
        head = self._last_head.number if self._last_head else None
        uri = self.uri_for(block.number, head)
        if uri != self.network:
            FALLBACK_TOTAL.labels("cutoff", operation).inc()
        block_hash = block.hash
        try:
            return block, await self._call(operation, lambda bt: func(bt, block_hash), netuid=netuid, uri=uri)
        except Exception as exc:
            if uri == self.network and self.archive_network and _is_pruned_state(exc):
                FALLBACK_TOTAL.labels("state_pruned", operation).inc()
                result = await self._call(
                    operation, lambda bt: func(bt, block_hash), netuid=netuid, uri=self.archive_network
                )
                return block, result
            if _is_pruned_state(exc):
                raise BlockNotFound(
                    block.number, "is pruned: its state is no longer kept by the node"
                ) from exc
            raise

    # ------------------------------------------------------------------------------------------ reads
    async def head(self) -> BlockInfo:
        async def get(bt: Any) -> BlockInfo:
            header = await bt.subtensor.chain.getHeader()
            number = int(header["number"])
            block_hash = await bt.subtensor.chain.getBlockHash(number)
            if not block_hash:
                raise ChainUnavailable(f"node has no hash for its own head {number}")
            return BlockInfo(number=number, hash=block_hash)

        head = await self._call("head", get)
        self._last_head = head
        return head

    async def block(self, number: int) -> BlockInfo:
        if number < 0:
            raise BlockNotFound(number)
        head = self._last_head.number if self._last_head else None
        uri = self.uri_for(number, head)

        async def get(bt: Any) -> str | None:
            block_hash: str | None = await bt.subtensor.chain.getBlockHash(number)
            return block_hash

        block_hash = await self._call("block", get, uri=uri)
        if not block_hash:
            # turbobt answers a future block with a hash of None rather than an error.
            raise BlockNotFound(number, "is in the future" if head is None or number > head else "not found")
        return BlockInfo(number=number, hash=block_hash)

    async def neurons(self, netuid: int, block: BlockInfo | None = None) -> list[Neuron]:
        async def get(bt: Any, block_hash: str) -> tuple[Any, Any]:
            subnet = bt.subnet(netuid)
            neurons, state = await asyncio.gather(
                subnet.neurons.all(block_hash=block_hash), subnet.get_state(block_hash=block_hash)
            )
            return neurons, state

        _, (neurons, state) = await self._read("neurons", netuid, block, get)
        if not neurons and not state:
            raise UnknownNetuid(netuid)
        stakes = stakes_by_hotkey(state) if state else {}
        return [neuron_from_turbobt(n, stakes.get(n.hotkey)) for n in sorted(neurons, key=lambda n: n.uid)]

    async def hyperparams(self, netuid: int, block: BlockInfo | None = None) -> SubnetHyperparams:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subnet(netuid).get_hyperparameters(block_hash=block_hash)

        _, params = await self._read("hyperparams", netuid, block, get)
        if not params:
            raise UnknownNetuid(netuid)
        return hyperparams_from_turbobt(params)

    async def subnet_state(self, netuid: int, block: BlockInfo | None = None) -> SubnetState:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subnet(netuid).get_state(block_hash=block_hash)

        _, state = await self._read("subnet_state", netuid, block, get)
        if not state:
            raise UnknownNetuid(netuid)
        return subnet_state_from_turbobt(netuid, state)

    async def certificates(self, netuid: int, block: BlockInfo | None = None) -> dict[str, Certificate]:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subnet(netuid).neurons.get_certificates(block_hash=block_hash)

        _, certificates = await self._read("certificates", netuid, block, get)
        return {hotkey: certificate_from_turbobt(c) for hotkey, c in (certificates or {}).items()}

    async def certificate(
        self, netuid: int, hotkey: str, block: BlockInfo | None = None
    ) -> Certificate | None:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subnet(netuid).neuron(hotkey=hotkey).get_certificate(block_hash=block_hash)

        _, certificate = await self._read("certificate", netuid, block, get)
        return certificate_from_turbobt(certificate) if certificate else None

    async def block_timestamp(self, block: BlockInfo | None = None) -> int:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subtensor.timestamp.Now.get(block_hash=block_hash)

        block, now = await self._read("block_timestamp", None, block, get)
        if now is None:
            raise BlockNotFound(block.number, "has no timestamp")
        return int(now) // 1000

    async def extrinsic(self, block: BlockInfo, index: int) -> BlockExtrinsic | None:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subtensor.chain.getBlock(block_hash)

        block, signed = await self._read("extrinsic", None, block, get)
        if not signed:
            raise BlockNotFound(block.number, f"with hash {block.hash} not found")
        extrinsics = signed["block"]["extrinsics"]
        if not 0 <= index < len(extrinsics):
            return None
        return extrinsic_from_turbobt(block.number, index, extrinsics[index])

    async def commitments(self, netuid: int, block: BlockInfo | None = None) -> dict[str, Commitment]:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subtensor.commitments.CommitmentOf.fetch(netuid, block_hash=block_hash)

        _, rows = await self._read("commitments", netuid, block, get)
        found = (commitment_from_turbobt(hotkey, registration) for (_, hotkey), registration in rows or [])
        return {c.hotkey: c for c in found if c is not None}

    async def commitment(self, netuid: int, hotkey: str, block: BlockInfo | None = None) -> Commitment | None:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subtensor.commitments.CommitmentOf.get(netuid, hotkey, block_hash=block_hash)

        _, registration = await self._read("commitment", netuid, block, get)
        return commitment_from_turbobt(hotkey, registration) if registration else None

    async def revealed_commitments(
        self, netuid: int, block: BlockInfo | None = None
    ) -> dict[str, list[RevealedCommitment]]:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subnet(netuid).commitments.fetch_revealed(block_hash=block_hash)

        _, revealed = await self._read("revealed_commitments", netuid, block, get)
        return {
            hotkey: [
                RevealedCommitment(hotkey=hotkey, reveal_block=int(r["reveal_block"]), data=str(r["data"]))
                for r in entries
            ]
            for hotkey, entries in (revealed or {}).items()
        }

    async def alpha_prices(self, block: BlockInfo | None = None) -> dict[int, int]:
        async def get(bt: Any, block_hash: str) -> dict[int, int]:
            prefix = "0x" + (_twox128(b"SubtensorModule") + _twox128(b"NetworksAdded")).hex()
            keys = await bt.subtensor.state.getKeys(prefix, block_hash=block_hash)
            # NetworksAdded hashes its u16 netuid with Identity: the key ends in it, little-endian.
            netuids = sorted({int.from_bytes(bytes.fromhex(key[-4:]), "little") for key in keys or []})
            limit = asyncio.Semaphore(PRICE_CONCURRENCY)

            async def price(netuid: int) -> int:
                async with limit:
                    value = await bt.subtensor.api_call(
                        "SwapRuntimeApi", "current_alpha_price", netuid=netuid, block_hash=block_hash
                    )
                    return int(value or 0)

            prices = await asyncio.gather(*(price(netuid) for netuid in netuids))
            return dict(zip(netuids, prices, strict=True))

        _, prices = await self._read("alpha_prices", None, block, get)
        return prices

    async def evm_associations(
        self, netuid: int, block: BlockInfo | None = None
    ) -> dict[str, EvmAssociation]:
        async def get(bt: Any, block_hash: str) -> tuple[Any, Any]:
            evm, uids = await asyncio.gather(
                bt.subnet(netuid).associated_evm_addresses.fetch(block_hash=block_hash),
                bt.subtensor.subtensor_module.Uids.fetch(netuid, block_hash=block_hash),
            )
            return evm, uids

        _, (evm, uids) = await self._read("evm_associations", netuid, block, get)
        hotkey_of_uid = {uid: hotkey for (_, hotkey), uid in uids or []}
        return {
            hotkey_of_uid[uid]: EvmAssociation(
                hotkey=hotkey_of_uid[uid],
                evm_address=str(association[0]).lower(),
                last_block_where_ownership_was_proven=int(association[1]),
            )
            for uid, association in (evm or {}).items()
            if uid in hotkey_of_uid
        }

    async def drand_last_stored_round(self, block: BlockInfo | None = None) -> int:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subtensor.drand.get_last_stored_round(block_hash=block_hash)

        _, last = await self._read("drand_last_stored_round", None, block, get)
        return int(last or 0)

    async def weights(self, netuid: int, block: BlockInfo | None = None) -> dict[int, dict[int, int]]:
        async def get(bt: Any, block_hash: str) -> Any:
            return await bt.subnet(netuid).weights.fetch(block_hash=block_hash)

        _, weights = await self._read("weights", netuid, block, get)
        return {
            validator: {uid: round(value * 65535) for uid, value in row.items()}
            for validator, row in (weights or {}).items()
        }

    async def pending_commits(self, netuid: int, block: BlockInfo | None = None) -> list[WeightCommit]:
        async def get(bt: Any, block_hash: str) -> Any:
            # Mechanism 0's storage index is the netuid itself.
            commits = bt.subtensor.subtensor_module.TimelockedWeightCommits
            return await commits.fetch(netuid, block_hash=block_hash)

        _, rows = await self._read("pending_commits", netuid, block, get)
        return [
            WeightCommit(hotkey=str(_ss58(hotkey)), commit_block=commit_block, reveal_round=reveal_round)
            for _, commits in rows or []
            for hotkey, commit_block, _, reveal_round in commits
        ]

    async def subscribe_heads(self) -> AsyncIterator[BlockInfo]:
        """Finalized heads from the node's subscription; a silent subscription counts as a drop."""
        bt = await self._bittensor(self.network)
        try:
            subscription_id = await asyncio.wait_for(
                bt.subtensor.chain.subscribeFinalizedHeads(), self.call_timeout
            )
            subscription = await bt.subtensor.subscribe(subscription_id)
        except Exception as exc:
            await self._drop(self.network)
            raise ChainUnavailable(f"head subscription failed ({type(exc).__name__}: {exc})") from exc
        # Blocks come every 12 s; several missed ones mean the connection is dead without saying so.
        silence = max(60.0, self.call_timeout * 3)
        try:
            while True:
                try:
                    header = await asyncio.wait_for(subscription.__anext__(), silence)
                except (TimeoutError, StopAsyncIteration) as exc:
                    await self._drop(self.network)
                    raise ChainUnavailable(f"no new head for {silence}s") from exc
                number = header["number"]
                number = int(number, 16) if isinstance(number, str) else int(number)
                block = await self.block(number)
                self._last_head = block
                yield block
        finally:
            with contextlib.suppress(Exception):
                await bt.subtensor.unsubscribe(subscription_id)

    # ------------------------------------------------------------------------------------- extrinsics
    async def _extrinsic(self, operation: str, netuid: int, submit: Callable[[Any], Awaitable[T]]) -> T:
        try:
            return await self._call(
                operation, submit, netuid=netuid, limit=self.extrinsic_timeout, raw_errors=True
            )
        except ChainError:
            raise
        except Exception as exc:
            # turbobt raises subtensor's module errors as exception classes named after them.
            from turbobt.substrate.exceptions import SubstrateException

            if isinstance(exc, SubstrateException):
                # Module errors turbobt has no class for come as SubstrateException({"name": ...}).
                detail = exc.args[0] if exc.args else None
                name = detail["name"] if isinstance(detail, dict) and "name" in detail else type(exc).__name__
                raise ExtrinsicFailed(name, str(exc)) from exc
            raise

    def _result(self, reveal_round: int | None = None, extrinsic_hash: str = "") -> ExtrinsicResult:
        # turbobt's helpers wait for finalization but return no block (nor, for commits and axons, the hash).
        return ExtrinsicResult(
            block=self._last_head, extrinsic_hash=extrinsic_hash, success=True, reveal_round=reveal_round
        )

    async def set_weights(
        self,
        signer: Signer,
        netuid: int,
        weights: Mapping[int, float],
        version_key: int = DEFAULT_VERSION_KEY,
    ) -> ExtrinsicResult:
        wallet = _as_wallet(signer)

        async def submit(bt: Any) -> str:
            # What turbobt's `weights.set` does (max-upscale to u16, mechanism 0), keeping the extrinsic so
            # the job records its hash.
            top = max(weights.values(), default=0.0)
            scaled = {uid: float_to_u16(value / top) if top else 0 for uid, value in weights.items()}
            extrinsic = await bt.subtensor.subtensor_module.set_mechanism_weights(
                netuid, list(scaled), 0, list(scaled.values()), version_key=version_key, wallet=wallet
            )
            await extrinsic.wait_for_finalization()
            return "0x" + bytes(extrinsic.extrinsic.extrinsic_hash).hex()

        extrinsic_hash = await self._extrinsic("set_weights", netuid, submit)
        return self._result(extrinsic_hash=extrinsic_hash)

    async def commit_weights(
        self,
        signer: Signer,
        netuid: int,
        weights: Mapping[int, float],
        version_key: int = DEFAULT_VERSION_KEY,
    ) -> ExtrinsicResult:
        wallet = _as_wallet(signer)

        async def submit(bt: Any) -> int:
            reveal_round: int = await bt.subnet(netuid).weights.commit(
                dict(weights), version_key=version_key, wallet=wallet
            )
            return reveal_round

        reveal_round = await self._extrinsic("commit_weights", netuid, submit)
        return self._result(reveal_round)

    async def serve_axon(
        self,
        signer: Signer,
        netuid: int,
        ip: str,
        port: int,
        protocol: int = 4,
        certificate: Certificate | None = None,
    ) -> ExtrinsicResult:
        wallet = _as_wallet(signer)
        cert = (
            {"algorithm": certificate.algorithm, "public_key": certificate.public_key}
            if certificate
            else None
        )

        async def submit(bt: Any) -> None:
            # turbobt always posts protocol 4 (HTTP), which is what axons speak.
            await bt.subnet(netuid).neurons.serve(ip, port, certificate=cert, wallet=wallet)

        await self._extrinsic("serve_axon", netuid, submit)
        return self._result()

    async def _set_commitment(self, operation: str, signer: Signer, netuid: int, info: dict[str, Any]) -> str:
        wallet = _as_wallet(signer)

        async def submit(bt: Any) -> str:
            extrinsic = await bt.subtensor.commitments.set_commitment(netuid, info, wallet=wallet)
            await extrinsic.wait_for_finalization()
            return "0x" + bytes(extrinsic.extrinsic.extrinsic_hash).hex()

        return await self._extrinsic(operation, netuid, submit)

    async def set_commitment(self, signer: Signer, netuid: int, data: bytes) -> ExtrinsicResult:
        info = _raw_commitment_info(data)
        extrinsic_hash = await self._set_commitment("set_commitment", signer, netuid, info)
        return self._result(extrinsic_hash=extrinsic_hash)

    async def set_timelocked_commitment(
        self, signer: Signer, netuid: int, data: str, blocks_until_reveal: int
    ) -> ExtrinsicResult:
        import bittensor_drand

        # What turbobt's `commitments.set_revealed` does, keeping the extrinsic hash.
        encrypted, reveal_round = bittensor_drand.get_encrypted_commitment(
            data, blocks_until_reveal, BLOCK_SECONDS
        )
        info = {"fields": [[{"TimelockEncrypted": {"encrypted": encrypted, "reveal_round": reveal_round}}]]}
        extrinsic_hash = await self._set_commitment("set_timelocked_commitment", signer, netuid, info)
        return self._result(int(reveal_round), extrinsic_hash=extrinsic_hash)

    async def close(self) -> None:
        for uri in list(self._connections):
            connection = self._connections.pop(uri)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)


def _twox128(data: bytes) -> bytes:
    """Substrate's storage prefix hash (two xxh64 halves, little-endian)."""
    import xxhash

    return xxhash.xxh64(data, seed=0).digest()[::-1] + xxhash.xxh64(data, seed=1).digest()[::-1]


def _is_pruned_state(exc: BaseException) -> bool:
    """Does the main node say it no longer has this block's state (so the archive should answer)?"""
    if isinstance(exc, _turbobt_error("UnknownBlock")):
        return True
    text = str(exc).lower()
    return "unknown block" in text or "state already discarded" in text or "pruned" in text


class _KeypairWallet:
    """The `wallet` turbobt wants around a bare Keypair (the calls used here read only `.hotkey`)."""

    def __init__(self, keypair: Any) -> None:
        self.hotkey = keypair
        self.coldkeypub = keypair


def _as_wallet(signer: Signer) -> Any:
    from bittensor_wallet import Keypair

    if isinstance(signer, Keypair):
        return _KeypairWallet(hotkey_of(signer))
    return signer
