"""The local subtensor node: JSON-RPC methods over a `SimulatedChain`, blocks on a timer, subscriptions.

Transport-free: `LocalNode.handle(session, method, params)` answers one call; `server.py` carries the calls
over websocket and HTTP POST. A session is anything with `async notify(method, subscription, result)`.
Everything runs on one event loop (the simulated chain is not thread-safe).

Served from the model: blocks with their extrinsics (`chain_getBlock`: the `Timestamp.set` inherent at index
0, then the signed extrinsics received, as bytes), `Timestamp.Now` (the model's 12 s per block number, not the
wall clock), `Drand.LastStoredRound`, `Commitments.CommitmentOf`/`LastCommitment`/`RevealedCommitments`,
`SubtensorModule.AssociatedEvmAddress` and `NetworksAdded`, and `SwapRuntimeApi.current_alpha_price`;
`Commitments.set_commitment` (one `Raw<n>` or `TimelockEncrypted` field) is accepted.
Not served (reads refused with an error naming the item, see `storage.py`): the price storage
(`SubnetMovingPrice`, `SubnetTAO`, `SubnetAlphaIn`, `Swap.*`: prices come from the runtime API only);
`UsedSpaceOf`/`MaxSpace` (the model limits commitments by a block rate limit, refused
as this runtime's `SpaceLimitExceeded`); revealing timelocked commitments or weights submitted here (revealing
needs drand's signature for the round, which an offline node never has: they stay committed); commitments of
several fields. Extrinsics the node fails itself (an unknown mechanism) appear in its blocks but not in the
model's decoded body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from app.chain.client import BlockNotFound, SubnetHyperparams, UnknownNetuid
from app.devchain import clock, market
from app.devchain.calls import CommitWeights
from app.devchain.model import SimulatedChain
from app.devchain.node import extrinsics, runtime_api
from app.devchain.node.codec import Runtime, blake2_256, hexstr, ss58
from app.devchain.node.storage import BlockContext, Storage, StorageNotModelled
from app.devchain.state import BlockRecord

log = structlog.get_logger(__name__)

# A watcher created just now may not be registered on the client yet (turbobt registers its queue after
# the submit call returns), so its first notification waits this long.
NOTIFY_GRACE = 0.05


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(message)

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def unknown_block(what: str) -> RpcError:
    # turbobt turns code 4003 into its UnknownBlock exception.
    return RpcError(4003, f"Client error: UnknownBlock: {what}")


class Session(Protocol):
    async def notify(self, method: str, subscription: str, result: Any) -> None: ...


@dataclass
class Included:
    """One extrinsic in a block: its bytes, hash and outcome."""

    data: bytes
    hash: str
    success: bool
    error_name: str | None


@dataclass
class Watch:
    session: Session
    subscription: str
    extrinsic_hash: str
    created: float = field(default_factory=time.monotonic)


def _param(params: Any, name: str, index: int, default: Any = None) -> Any:
    if isinstance(params, dict):
        return params.get(name, default)
    if isinstance(params, list | tuple) and len(params) > index:
        return params[index]
    return default


def _ss58(account: Any) -> str:
    """A decoded `AccountId32` argument (scalecodec gives ss58 or 0x-hex) as ss58."""
    text = str(account)
    return ss58(text) if text.startswith("0x") else text


def _to_int(value: Any) -> int:
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    return int(value)


class LocalNode:
    def __init__(self, runtime: Runtime, chain: SimulatedChain, *, block_time: float = 12.0) -> None:
        self.runtime = runtime
        self.chain = chain
        self.block_time = block_time
        self.storage = Storage(runtime, self)
        self.nonces: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._bodies: OrderedDict[int, list[Included]] = OrderedDict()
        self._events: dict[int, bytes] = {}
        self._pending: dict[str, bytes] = {}  # simulated hash -> extrinsic bytes
        self._commits: dict[tuple[int, str, int], tuple[bytes, int]] = {}
        self._commit_owner: dict[str, tuple[int, str]] = {}
        # Extrinsics the node fails itself (calls for a mechanism the simulated subnet lacks).
        self._forced: list[tuple[bytes, str]] = []
        # Headers outlive state (as on a pruning node): every produced block, genesis and the era range below.
        first = chain.genesis_number
        self._numbers: dict[str, int] = {
            self.hash_of(n): n for n in (0, *range(max(1, first - 64), first + 1))
        }
        self._pending_commits: dict[str, tuple[bytes, int]] = {}
        self._head_subs: dict[str, tuple[Session, str]] = {}  # id -> (session, notification method)
        self._watches: dict[str, Watch] = {}
        self._watch_by_hash: dict[str, str] = {}
        self._producer: asyncio.Task[None] | None = None
        self.new_block = asyncio.Event()
        self._methods: dict[str, Callable[[Session | None, Any], Awaitable[Any]]] = {
            "chain_getHeader": self.chain_get_header,
            "chain_getBlockHash": self.chain_get_block_hash,
            # Substrate's alias of chain_getBlockHash: with no number, the head's hash (final at once here).
            "chain_getHead": self.chain_get_block_hash,
            "chain_getBlock": self.chain_get_block,
            "chain_getFinalizedHead": self.chain_get_finalized_head,
            "chain_getFinalisedHead": self.chain_get_finalized_head,
            "chain_subscribeFinalizedHeads": self._subscriber("chain_finalizedHead"),
            "chain_subscribeFinalisedHeads": self._subscriber("chain_finalizedHead"),
            "chain_subscribeNewHeads": self._subscriber("chain_newHead"),
            "chain_subscribeNewHead": self._subscriber("chain_newHead"),
            "chain_subscribeAllHeads": self._subscriber("chain_allHead"),
            "chain_unsubscribeFinalizedHeads": self.unsubscribe_heads,
            "chain_unsubscribeFinalisedHeads": self.unsubscribe_heads,
            "chain_unsubscribeNewHeads": self.unsubscribe_heads,
            "chain_unsubscribeNewHead": self.unsubscribe_heads,
            "chain_unsubscribeAllHeads": self.unsubscribe_heads,
            "state_call": self.state_call,
            "state_getStorage": self.state_get_storage,
            "state_getStorageAt": self.state_get_storage,
            "state_getKeys": self.state_get_keys,
            "state_getKeysPaged": self.state_get_keys_paged,
            "state_queryStorageAt": self.state_query_storage_at,
            "state_getRuntimeVersion": self.state_get_runtime_version,
            "chain_getRuntimeVersion": self.state_get_runtime_version,
            "state_getMetadata": self.state_get_metadata,
            "system_accountNextIndex": self.system_account_next_index,
            # Substrate's alias, what the bittensor SDK asks for its nonces.
            "account_nextIndex": self.system_account_next_index,
            "system_chain": self._constant("Pylon localnet"),
            "system_name": self._constant("pylon-localnet"),
            "system_version": self._constant("1.0.0"),
            "system_health": self._constant({"peers": 0, "isSyncing": False, "shouldHavePeers": False}),
            "system_properties": self._constant({"ss58Format": 42, "tokenDecimals": 9, "tokenSymbol": "TAO"}),
            "author_submitAndWatchExtrinsic": self.author_submit_and_watch,
            "author_submitExtrinsic": self.author_submit,
            "author_unwatchExtrinsic": self.author_unwatch,
            "rpc_methods": self.rpc_methods,
            # Development only (no subtensor has it): what `pylon localnet register` calls.
            "pylon_registerHotkey": self.pylon_register_hotkey,
        }

    # ------------------------------------------------------------------------------------ dispatch
    async def handle(self, session: Session | None, method: str, params: Any) -> Any:
        handler = self._methods.get(method)
        if handler is None:
            raise RpcError(-32601, f"Method not found: {method}")
        try:
            return await handler(session, params)
        except RpcError:
            raise
        except StorageNotModelled as exc:
            # Substrate reports state errors as -32000-range server errors; the message names the item.
            raise RpcError(-32000, f"Client error: {exc}") from exc
        except (KeyError, ValueError, TypeError) as exc:
            raise RpcError(-32602, f"Invalid params: {exc}") from exc

    @staticmethod
    def _constant(value: Any) -> Callable[[Session | None, Any], Awaitable[Any]]:
        async def answer(session: Session | None, params: Any) -> Any:
            return value

        return answer

    async def rpc_methods(self, session: Session | None, params: Any) -> Any:
        return {"methods": sorted(self._methods)}

    # ------------------------------------------------------------------------------------- blocks
    def hash_of(self, number: int) -> str:
        """The simulated chain's block hash formula (pre-genesis numbers, 0 and era births, get one too)."""
        return (
            "0x" + hashlib.blake2b(f"block:{self.chain.seed}:{number}".encode(), digest_size=32).hexdigest()
        )

    @property
    def genesis_hash(self) -> str:
        return self.hash_of(0)

    def number_of(self, block_hash: str) -> int | None:
        """The number of a known block hash (pruned state included), None if no block has it."""
        return self._numbers.get(block_hash)

    def record_at(self, block_hash: str | None) -> BlockRecord:
        """The block's state; UnknownBlock (4003) for an unknown hash or discarded state."""
        if block_hash is None:
            return self.chain.head
        try:
            return self.chain.block_by_hash(block_hash)
        except BlockNotFound as exc:
            raise unknown_block(f"State already discarded for {block_hash} ({exc})") from exc

    def header(self, number: int) -> dict[str, Any]:
        parent = self.hash_of(number - 1) if number > 0 else "0x" + "00" * 32
        digest = hashlib.blake2b(f"state:{self.chain.seed}:{number}".encode(), digest_size=32).hexdigest()
        body = b"".join(x.data for x in self.body(number))
        return {
            "parentHash": parent,
            "number": hex(number),
            "stateRoot": "0x" + digest,
            "extrinsicsRoot": hexstr(hashlib.blake2b(body, digest_size=32).digest()),
            "digest": {"logs": []},
        }

    def timestamp_ms(self, number: int) -> int:
        """The model's deterministic block time (12 s per block number, whatever `block_time` paces)."""
        return clock.timestamp_ms(number)

    def drand_round(self, number: int) -> int:
        return clock.drand_round(number)

    def alpha_price(self, netuid: int, number: int) -> int:
        return market.alpha_price(self.chain.seed, netuid, number)

    def body(self, number: int) -> list[Included]:
        """The block's extrinsics as bytes: the `Timestamp.set` inherent, then the signed ones included."""
        inherent = self.runtime.encode(
            "Extrinsic",
            {
                "call_module": "Timestamp",
                "call_function": "set",
                "call_args": {"now": self.timestamp_ms(number)},
            },
        )
        first = Included(data=inherent, hash=hexstr(blake2_256(inherent)), success=True, error_name=None)
        return [first, *self._bodies.get(number, [])]

    def commit_payload(self, netuid: int, hotkey: str, commit_block: int) -> tuple[bytes, int]:
        return self._commits.get((netuid, hotkey, commit_block), (b"", 0))

    def encoded_events(self, number: int) -> bytes:
        cached = self._events.get(number)
        if cached is not None:
            return cached
        records = []
        info = {"weight": {"ref_time": 0, "proof_size": 0}, "class": "Normal", "pays_fee": "Yes"}
        for index, included in enumerate(self.body(number)):
            if included.success:
                event: dict[str, Any] = {"System": {"ExtrinsicSuccess": {"dispatch_info": info}}}
            else:
                event = {
                    "System": {
                        "ExtrinsicFailed": {
                            "dispatch_error": self._dispatch_error(included.error_name or "Other"),
                            "dispatch_info": info,
                        }
                    }
                }
            records.append({"phase": {"ApplyExtrinsic": index}, "event": event, "topics": []})
        item = self.runtime.storage_item("System", "Events")
        encoded = self.runtime.encode(item.value_type, records)
        self._events[number] = encoded
        return encoded

    def _dispatch_error(self, name: str) -> Any:
        aliases = {
            "SubNetworkDoesNotExist": "SubnetNotExists",
            "InvalidWeight": "WeightVecLengthIsLow",
            # Runtimes since the space-based limit (spec 318 among them) have no RateLimit error: their
            # refusal of a too-frequent commitment is SpaceLimitExceeded.
            "CommitmentSetRateLimitExceeded": "SpaceLimitExceeded",
        }
        for candidate in (name, aliases.get(name)):
            if candidate is None:
                continue
            for pallet in ("SubtensorModule", "Commitments"):
                found = self.runtime.module_error(pallet, candidate)
                if found is not None:
                    pallet_index, error_index = found
                    error = hexstr(bytes([error_index, 0, 0, 0]))
                    return {"Module": {"index": pallet_index, "error": error}}
        return "Other"

    # ----------------------------------------------------------------------------------- producer
    def start(self) -> None:
        if self._producer is None or self._producer.done():
            self._producer = asyncio.get_running_loop().create_task(self._produce_forever(), name="localnet")

    async def stop(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
            self._producer = None

    async def _produce_forever(self) -> None:
        next_at = time.monotonic() + self.block_time
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.block_time
            try:
                await self.produce_block()
            except Exception:
                log.exception("localnet_block_failed")

    async def produce_block(self) -> BlockRecord:
        """Make one block: apply queued extrinsics, record events, notify watchers and head subscribers."""
        record = self.chain.produce_block()
        included: list[Included] = []
        for sim_hash in record.extrinsics:
            data = self._pending.pop(sim_hash, b"")
            receipt = self.chain.receipts[sim_hash]
            xt_hash = hexstr(hashlib.blake2b(data, digest_size=32).digest())
            commit = self._pending_commits.pop(sim_hash, None)
            if commit is not None and receipt.success:
                netuid, hotkey = self._commit_owner[sim_hash]
                self._commits[(netuid, hotkey, record.number)] = commit
            self._commit_owner.pop(sim_hash, None)
            included.append(
                Included(data=data, hash=xt_hash, success=receipt.success, error_name=receipt.error_name)
            )
            log.info(
                "localnet_extrinsic_applied",
                block=record.number,
                extrinsic=xt_hash,
                success=receipt.success,
                error=receipt.error_name,
            )
        for data, error_name in self._forced:
            xt_hash = hexstr(hashlib.blake2b(data, digest_size=32).digest())
            included.append(Included(data=data, hash=xt_hash, success=False, error_name=error_name))
        self._forced = []
        self._numbers[record.hash] = record.number
        self._bodies[record.number] = included
        while len(self._bodies) > self.chain.state_history:
            old, _ = self._bodies.popitem(last=False)
            self._events.pop(old, None)
        self.new_block.set()
        self.new_block = asyncio.Event()
        header = self.header(record.number)
        for sub_id, (session, method) in list(self._head_subs.items()):
            await self._safe_notify(session, method, sub_id, header)
        for xt in included:
            watch_id = self._watch_by_hash.pop(xt.hash, None)
            watch = self._watches.get(watch_id) if watch_id else None
            if watch is not None:
                asyncio.get_running_loop().create_task(self._notify_inclusion(watch, record.hash))
        return record

    async def _notify_inclusion(self, watch: Watch, block_hash: str) -> None:
        await asyncio.sleep(max(0.0, watch.created + NOTIFY_GRACE - time.monotonic()))
        # Local finality is instant: the including block is final at once.
        await self._safe_notify(
            watch.session, "author_extrinsicUpdate", watch.subscription, {"inBlock": block_hash}
        )
        await self._safe_notify(
            watch.session, "author_extrinsicUpdate", watch.subscription, {"finalized": block_hash}
        )

    async def _safe_notify(self, session: Session, method: str, subscription: str, result: Any) -> None:
        try:
            await session.notify(method, subscription, result)
        except Exception:
            # The client went away: forget its subscriptions.
            self.drop_session(session)

    def drop_session(self, session: Session) -> None:
        for sub_id, (owner, _) in list(self._head_subs.items()):
            if owner is session:
                del self._head_subs[sub_id]
        for watch_id, watch in list(self._watches.items()):
            if watch.session is session:
                del self._watches[watch_id]

    # ---------------------------------------------------------------------------------- chain_*
    async def chain_get_header(self, session: Session | None, params: Any) -> Any:
        block_hash = _param(params, "hash", 0)
        number = self.chain.head.number if block_hash is None else self.number_of(block_hash)
        return None if number is None else self.header(number)

    async def chain_get_block_hash(self, session: Session | None, params: Any) -> Any:
        # turbobt sends the number under the name "hash".
        value = _param(params, "hash", 0)
        if value is None:
            value = _param(params, "blockNumber", 0)
        if value is None:
            return self.chain.head.hash
        number = _to_int(value)
        if number < 0 or number > self.chain.head.number:
            return None
        return self.hash_of(number)

    async def chain_get_block(self, session: Session | None, params: Any) -> Any:
        block_hash = _param(params, "hash", 0)
        number = self.chain.head.number if block_hash is None else self.number_of(block_hash)
        if number is None:
            return None
        return {
            "block": {
                "header": self.header(number),
                "extrinsics": [hexstr(x.data) for x in self.body(number)],
            },
            "justifications": None,
        }

    async def chain_get_finalized_head(self, session: Session | None, params: Any) -> Any:
        return self.chain.head.hash

    def _subscriber(self, notification: str) -> Callable[[Session | None, Any], Awaitable[Any]]:
        async def subscribe(session: Session | None, params: Any) -> Any:
            if session is None:
                raise RpcError(-32601, "Subscriptions need a websocket connection")
            sub_id = self._new_id()
            self._head_subs[sub_id] = (session, notification)
            header = self.header(self.chain.head.number)
            asyncio.get_running_loop().create_task(self._first_head(session, notification, sub_id, header))
            return sub_id

        return subscribe

    async def _first_head(self, session: Session, method: str, sub_id: str, header: dict[str, Any]) -> None:
        # Substrate sends the current head at once; give the client a moment to register the subscription.
        await asyncio.sleep(NOTIFY_GRACE)
        if sub_id in self._head_subs:
            await self._safe_notify(session, method, sub_id, header)

    async def unsubscribe_heads(self, session: Session | None, params: Any) -> Any:
        sub_id = _param(params, "subscription", 0)
        return self._head_subs.pop(str(sub_id), None) is not None

    def _new_id(self) -> str:
        return hashlib.blake2b(f"sub:{next(self._ids)}:{time.time_ns()}".encode(), digest_size=8).hexdigest()

    # ---------------------------------------------------------------------------------- state_*
    async def state_get_runtime_version(self, session: Session | None, params: Any) -> Any:
        return self.runtime.runtime_version

    async def state_get_metadata(self, session: Session | None, params: Any) -> Any:
        from scalecodec.base import ScaleBytes

        wrapped = self.runtime.registry.create_scale_object(
            "Option<Vec<u8>>", data=ScaleBytes(self.runtime.metadata_answer)
        )
        return wrapped.decode()

    async def state_call(self, session: Session | None, params: Any) -> Any:
        name = _param(params, "name", 0)
        data = _param(params, "bytes", 1) or ""
        block_hash = _param(params, "hash", 2)
        payload = bytes.fromhex(str(data).removeprefix("0x"))
        if name == "Metadata_metadata_at_version":
            version = int.from_bytes(payload[:4], "little") if payload else 15
            return self.runtime.metadata_answer if version == 15 else "0x00"
        if name == "Metadata_metadata_versions":
            return hexstr(self.runtime.encode("Vec<u32>", [14, 15]))
        if name == "TransactionPaymentApi_query_info":
            return hexstr(runtime_api.fixed_fee_info(self.runtime))
        record = self.record_at(block_hash)
        if name == "SwapRuntimeApi_current_alpha_price":
            args = runtime_api.decode_netuid_args(
                self.runtime, "SwapRuntimeApi", "current_alpha_price", payload
            )
            netuid = int(args["netuid"])
            price = self.alpha_price(netuid, record.number) if netuid in self.known_netuids(record) else 0
            return hexstr(
                self.runtime.encode(self.runtime.api_output("SwapRuntimeApi", "current_alpha_price"), price)
            )
        api, _, method = str(name).partition("_")
        handler = self._runtime_calls().get((api, method))
        if handler is None or method not in self.runtime.apis.get(api, {}):
            raise RpcError(
                -32000,
                f"Client error: Execution failed: pylon localnet does not implement the runtime API {name}",
            )
        args = runtime_api.decode_netuid_args(self.runtime, api, method, payload)
        return hexstr(await self._cached_call(record.hash, str(name), payload, lambda: handler(record, args)))

    def _subnet_at(self, record: BlockRecord, netuid: Any) -> Any:
        try:
            return self.chain.subnet(int(netuid), record.info)
        except UnknownNetuid:
            return None

    def _runtime_calls(self) -> dict[tuple[str, str], Callable[[BlockRecord, dict[str, Any]], bytes]]:
        """The runtime APIs answered from the model, each `(block record, decoded args) -> SCALE bytes`."""
        rt = self.runtime
        subnet = self._subnet_at
        return {
            ("NeuronInfoRuntimeApi", "get_neurons_lite"): lambda rec, args: runtime_api.neurons_lite(
                rt, subnet(rec, args["netuid"])
            ),
            ("NeuronInfoRuntimeApi", "get_neurons"): lambda rec, args: runtime_api.neurons_full(
                rt, subnet(rec, args["netuid"])
            ),
            ("NeuronInfoRuntimeApi", "get_neuron_lite"): lambda rec, args: runtime_api.neuron_lite(
                rt, subnet(rec, args["netuid"]), int(args["uid"])
            ),
            ("NeuronInfoRuntimeApi", "get_neuron"): lambda rec, args: runtime_api.neuron_full(
                rt, subnet(rec, args["netuid"]), int(args["uid"])
            ),
            ("SubnetInfoRuntimeApi", "get_subnet_hyperparams"): lambda rec, args: runtime_api.hyperparams(
                rt, subnet(rec, args["netuid"])
            ),
            ("SubnetInfoRuntimeApi", "get_subnet_state"): lambda rec, args: runtime_api.subnet_state(
                rt, subnet(rec, args["netuid"])
            ),
            ("SubnetInfoRuntimeApi", "get_metagraph"): lambda rec, args: runtime_api.metagraph(
                rt, subnet(rec, args["netuid"]), rec.number
            ),
            ("StakeInfoRuntimeApi", "get_stake_info_for_coldkey"): lambda rec, args: (
                runtime_api.stake_info_for_coldkey(rt, rec.subnets, _ss58(args["coldkey_account"]))
            ),
            ("StakeInfoRuntimeApi", "get_stake_info_for_coldkeys"): lambda rec, args: (
                runtime_api.stake_info_for_coldkeys(
                    rt, rec.subnets, [_ss58(c) for c in args["coldkey_accounts"]]
                )
            ),
            ("StakeInfoRuntimeApi", "get_stake_info_for_hotkey_coldkey_netuid"): lambda rec, args: (
                runtime_api.stake_info_for_hotkey_coldkey_netuid(
                    rt,
                    rec.subnets,
                    _ss58(args["hotkey_account"]),
                    _ss58(args["coldkey_account"]),
                    int(args["netuid"]),
                )
            ),
        }

    @staticmethod
    def known_netuids(record: BlockRecord) -> set[int]:
        """The block's subnets and root (netuid 0), which every subtensor chain has."""
        return {market.ROOT_NETUID, *record.subnets}

    _call_cache: OrderedDict[tuple[str, str, bytes], bytes]

    async def _cached_call(
        self, block_hash: str, name: str, payload: bytes, build: Callable[[], bytes]
    ) -> bytes:
        cache = self.__dict__.setdefault("_call_cache", OrderedDict())
        key = (block_hash, name, payload)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = build()
        cache[key] = value
        if len(cache) > 64:
            cache.popitem(last=False)
        return value

    def _ctx(self, block_hash: str | None) -> BlockContext:
        return BlockContext(record=self.record_at(block_hash), node=self)

    async def state_get_storage(self, session: Session | None, params: Any) -> Any:
        key = bytes.fromhex(str(_param(params, "key", 0)).removeprefix("0x"))
        value = self.storage.get(key, self._ctx(_param(params, "hash", 1)))
        return None if value is None else hexstr(value)

    async def state_get_keys(self, session: Session | None, params: Any) -> Any:
        prefix = bytes.fromhex(str(_param(params, "prefix", 0) or "").removeprefix("0x"))
        return [hexstr(k) for k in self.storage.keys(prefix, self._ctx(_param(params, "hash", 1)))]

    async def state_get_keys_paged(self, session: Session | None, params: Any) -> Any:
        prefix = bytes.fromhex(str(_param(params, "prefix", 0) or "").removeprefix("0x"))
        count = int(_param(params, "count", 1, 1000))
        start = bytes.fromhex(str(_param(params, "startKey", 2) or "").removeprefix("0x"))
        keys = self.storage.keys(prefix, self._ctx(_param(params, "hash", 3)))
        return [hexstr(k) for k in keys if k > start][:count]

    async def state_query_storage_at(self, session: Session | None, params: Any) -> Any:
        keys = _param(params, "keys", 0) or []
        block_hash = _param(params, "hash", 1)
        ctx = self._ctx(block_hash)
        changes = []
        for key in keys:
            value = self.storage.get(bytes.fromhex(str(key).removeprefix("0x")), ctx)
            changes.append([key, None if value is None else hexstr(value)])
        return [{"block": ctx.record.hash, "changes": changes}]

    # ------------------------------------------------------------------------------- extrinsics
    async def system_account_next_index(self, session: Session | None, params: Any) -> Any:
        account = str(_param(params, "account", 0))
        return self.nonces.get(account, 0)

    def _accept(self, data_hex: str) -> tuple[extrinsics.SignedExtrinsic, str]:
        """Check and queue an extrinsic; returns it and its hash. Raises RpcError as the pool would."""
        data = bytes.fromhex(str(data_hex).removeprefix("0x"))
        try:
            xt = extrinsics.decode(self.runtime, data)
            call, mechanism = extrinsics.to_call(xt)
            expected = self.nonces.get(xt.signer, 0)
            if xt.nonce < expected:
                raise extrinsics.InvalidTransaction("Transaction is outdated")
            if xt.nonce > expected:
                raise extrinsics.InvalidTransaction("Transaction will be valid in the future")
            # A transaction is checked against the block it would go into: the next one.
            current = self.chain.head.number + 1
            birth = xt.era.birth(current)
            birth_hash = bytes.fromhex(self.hash_of(birth)[2:])
            genesis = bytes.fromhex(self.genesis_hash[2:])
            if not extrinsics.verify_signature(self.runtime, xt, genesis, birth_hash):
                # Also what an expired era looks like: the birth block differs from the one signed.
                raise extrinsics.InvalidTransaction("Transaction has a bad signature")
        except extrinsics.InvalidTransaction as exc:
            raise RpcError(1010, "Invalid Transaction", exc.reason) from exc
        except extrinsics.UnsupportedCall as exc:
            raise RpcError(1002, f"Verification Error: Runtime error: {exc}") from exc
        self.nonces[xt.signer] = expected + 1
        if mechanism != 0:
            # Pylon's simulated subnets have one mechanism; the chain reports the others as missing.
            self._forced.append((data, "MechanismDoesNotExist"))
            return xt, xt.hash
        sim_hash = self.chain.submit(xt.signer, call)
        self._pending[sim_hash] = data
        if isinstance(call, CommitWeights):
            reveal_round = int(xt.call_args.get("reveal_round", 0))
            self._pending_commits[sim_hash] = (call.commit, reveal_round)
            self._commit_owner[sim_hash] = (call.netuid, xt.signer)
            log.info(
                "localnet_commit_recorded",
                hotkey=xt.signer,
                netuid=call.netuid,
                reveal_round=reveal_round,
                note="timelocked weights cannot be revealed offline (no drand signature)",
            )
        return xt, xt.hash

    async def author_submit_and_watch(self, session: Session | None, params: Any) -> Any:
        if session is None:
            raise RpcError(-32601, "Subscriptions need a websocket connection")
        _, xt_hash = self._accept(_param(params, "bytes", 0) or _param(params, "extrinsic", 0))
        sub_id = self._new_id()
        watch = Watch(session=session, subscription=sub_id, extrinsic_hash=xt_hash)
        self._watches[sub_id] = watch
        self._watch_by_hash[xt_hash] = sub_id
        asyncio.get_running_loop().create_task(self._ready(watch))
        return sub_id

    async def _ready(self, watch: Watch) -> None:
        await asyncio.sleep(NOTIFY_GRACE)
        if watch.subscription in self._watches and watch.extrinsic_hash in self._watch_by_hash:
            await self._safe_notify(watch.session, "author_extrinsicUpdate", watch.subscription, "ready")

    async def author_submit(self, session: Session | None, params: Any) -> Any:
        _, xt_hash = self._accept(_param(params, "extrinsic", 0) or _param(params, "bytes", 0))
        return xt_hash

    async def author_unwatch(self, session: Session | None, params: Any) -> Any:
        sub_id = str(_param(params, "bytes", 0) or _param(params, "subscription", 0))
        watch = self._watches.pop(sub_id, None)
        if watch is not None:
            self._watch_by_hash.pop(watch.extrinsic_hash, None)
        return watch is not None

    # ------------------------------------------------------------------------------ development
    async def pylon_register_hotkey(self, session: Session | None, params: Any) -> Any:
        """Development only: register an ss58 hotkey on the subnets `netuids` (null: all), with a validator
        permit and stake when `validator`, at the head; returns {netuid: uid}. A real chain would take a
        `burned_register` paid in TAO; a development chain has no coldkeys to pay with."""
        from scalecodec.utils.ss58 import ss58_decode

        hotkey = str(_param(params, "hotkey", 0))
        netuids = _param(params, "netuids", 1)
        validator = bool(_param(params, "validator", 2, False))
        try:
            ss58_decode(hotkey)
        except ValueError:
            raise RpcError(-32602, f"Invalid params: not an ss58 address: {hotkey!r}") from None
        if netuids is not None:
            unknown = set(map(int, netuids)) - set(self.chain.netuids)
            if unknown:
                raise RpcError(-32602, f"Invalid params: no subnet {sorted(unknown)} on this chain")
        uids = register_hotkey(self.chain, hotkey, netuids, validator=validator)
        # Registration changes the head's state in place: answers cached for the head are stale now.
        self.__dict__.pop("_call_cache", None)
        self.storage.clear()
        log.info("localnet_hotkey_registered", hotkey=hotkey, uids=uids, validator=validator)
        return {str(netuid): uid for netuid, uid in uids.items()}


def register_hotkey(
    chain: SimulatedChain, hotkey: str, netuids: Iterable[int] | None = None, *, validator: bool = False
) -> dict[int, int]:
    """Register `hotkey` on each subnet of `netuids` (None: all); a validator gets a permit and stake.
    A plain registration gets a small stake, so that one registrant does not evict another."""
    chosen = chain.netuids if netuids is None else sorted(set(map(int, netuids)))
    uids: dict[int, int] = {}
    for netuid in chosen:
        if validator:
            uids[netuid] = chain.register(netuid, hotkey, validator=True)
        else:
            known = chain.subnet(netuid).uid_of(hotkey)
            uids[netuid] = known if known is not None else chain.register(netuid, hotkey, stake=1000.0)
    return uids


def build_node(
    runtime: Runtime,
    *,
    netuids: list[int] | tuple[int, ...] = (1,),
    neurons: int = 256,
    seed: int = 0,
    block_time: float = 12.0,
    register: list[str] | tuple[str, ...] = (),
    validators: list[str] | tuple[str, ...] = (),
    hyperparams: SubnetHyperparams | None = None,
    commitment_rate_limit: int = 100,
) -> LocalNode:
    """A node over a fresh simulated chain: `register` hotkeys join every subnet, `validators` also get a
    validator permit and stake, so a developer's own wallet can set weights and serve an axon."""
    chain = SimulatedChain(
        netuids=netuids,
        neurons=neurons,
        seed=seed,
        hyperparams=hyperparams,
        commitment_rate_limit=commitment_rate_limit,
    )
    for hotkey in validators:
        register_hotkey(chain, hotkey, validator=True)
    for hotkey in register:
        register_hotkey(chain, hotkey)
    for hotkey in (*validators, *register):
        for netuid in chain.netuids:
            if chain.subnet(netuid).uid_of(hotkey) is None:
                raise ValueError(f"subnet {netuid} has too few neurons to register every given hotkey")
    return LocalNode(runtime, chain, block_time=block_time)
