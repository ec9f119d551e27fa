"""SCALE encoding with a real subtensor runtime's type registry.

The node never hand-writes SCALE: it loads the runtime's MetadataV15 (the exact `Metadata_metadata_at_version`
answer recorded from a live node) into scalecodec the same way turbobt does, and encodes and decodes
through the types the metadata names (`scale_info::<id>`),
so what turbobt decodes matches field for field.

The metadata files are not part of Pylon: `pylon chain dump-metadata` records them from a live node, and
`find_metadata_dir()` looks for them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset

METADATA_FILE = "metadata_v15.json"
RUNTIME_VERSION_FILE = "runtime_version.json"
METADATA_DIR_VARIABLE = "PYLON_CHAIN_METADATA_DIR"


class MetadataMissing(FileNotFoundError):
    """No recorded runtime metadata where Pylon looked; the message says how to get it."""


def _candidate_dirs() -> list[Path]:
    root = Path(__file__).resolve().parents[3]
    # A checkout next to the project's shared test data (../shared/chain), or one level further up for
    # git worktrees kept in a sub-folder.
    return [root.parent / "shared" / "chain", root.parent.parent / "shared" / "chain"]


def find_metadata_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding `metadata_v15.json` and `runtime_version.json`.

    Looks at `explicit`, then `PYLON_CHAIN_METADATA_DIR`, then `../shared/chain` next to the project.
    """
    candidates: list[Path]
    if explicit:
        candidates = [Path(explicit)]
    elif os.environ.get(METADATA_DIR_VARIABLE):
        candidates = [Path(os.environ[METADATA_DIR_VARIABLE])]
    else:
        candidates = _candidate_dirs()
    for path in candidates:
        if (path / METADATA_FILE).is_file() and (path / RUNTIME_VERSION_FILE).is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise MetadataMissing(
        f"no runtime metadata ({METADATA_FILE}, {RUNTIME_VERSION_FILE}) in {looked}; record it from a live "
        f"node with `pylon chain dump-metadata --network URL --out DIR` and pass --metadata-dir DIR "
        f"(or set {METADATA_DIR_VARIABLE})"
    )


def xxh128(data: bytes) -> bytes:
    return xxhash.xxh64(data, seed=0).digest()[::-1] + xxhash.xxh64(data, seed=1).digest()[::-1]


def _hash_part(hasher: str, data: bytes) -> bytes:
    if hasher == "Identity":
        return data
    if hasher == "Blake2_128Concat":
        return hashlib.blake2b(data, digest_size=16).digest() + data
    if hasher == "Twox64Concat":
        return xxhash.xxh64(data, seed=0).digest()[::-1] + data
    if hasher == "Blake2_128":
        return hashlib.blake2b(data, digest_size=16).digest()
    if hasher == "Twox128":
        return xxh128(data)
    raise NotImplementedError(f"storage hasher {hasher}")


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


@dataclass(frozen=True)
class StorageItem:
    pallet: str
    name: str
    prefix: bytes  # xxh128(pallet prefix) + xxh128(item name)
    param_types: tuple[str, ...]
    hashers: tuple[str, ...]
    value_type: str


class Runtime:
    """One runtime's metadata, its type registry, and the helpers the node encodes with."""

    def __init__(self, metadata_answer: str, runtime_version: dict[str, Any]) -> None:
        # turbobt's own MetadataV15 additions, so both ends read the registry identically.
        from turbobt.substrate._scalecodec import load_type_registry_v15_types

        self.metadata_answer = metadata_answer if metadata_answer.startswith("0x") else "0x" + metadata_answer
        self.runtime_version = runtime_version
        registry = RuntimeConfigurationObject()
        registry.update_type_registry(load_type_registry_preset(name="core"))
        registry.update_type_registry_types(load_type_registry_v15_types())
        registry.type_registry["types"]["metadataall"].type_mapping.append(["V15", "MetadataV15"])
        wrapped = registry.create_scale_object("Option<Vec<u8>>", data=ScaleBytes(self.metadata_answer))
        wrapped.decode()
        metadata = registry.create_scale_object("MetadataVersioned", data=ScaleBytes(wrapped.value))
        metadata.decode()
        registry.add_portable_registry(metadata)
        self.registry = registry
        self.metadata = metadata
        v15 = metadata.value[1]["V15"]
        self.apis = {
            api["name"]: {method["name"]: method for method in api["methods"]} for api in v15["apis"]
        }
        self._pallet_index = {pallet["name"]: pallet["index"] for pallet in v15["pallets"]}
        self._storage: dict[bytes, StorageItem] = {}

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str] | None = None) -> Runtime:
        folder = find_metadata_dir(path)
        answer = json.loads((folder / METADATA_FILE).read_text())
        version = json.loads((folder / RUNTIME_VERSION_FILE).read_text())
        if not isinstance(answer, str) or not isinstance(version, dict):
            raise MetadataMissing(
                f"{folder}: unexpected content in {METADATA_FILE} or {RUNTIME_VERSION_FILE}"
            )
        return cls(answer, version)

    @property
    def spec_version(self) -> int:
        return int(self.runtime_version["specVersion"])

    @property
    def transaction_version(self) -> int:
        return int(self.runtime_version["transactionVersion"])

    # ------------------------------------------------------------------------------------ encoding
    def encode(self, type_string: str, value: Any) -> bytes:
        obj = self.registry.create_scale_object(type_string, metadata=self.metadata)
        return bytes(obj.encode(value).data)

    def decode(self, type_string: str, data: bytes) -> Any:
        obj = self.registry.create_scale_object(
            type_string, data=ScaleBytes(bytearray(data)), metadata=self.metadata
        )
        return obj.decode()

    def api_output(self, api: str, method: str) -> str:
        return f"scale_info::{self.apis[api][method]['output']}"

    def api_inputs(self, api: str, method: str) -> list[tuple[str, str]]:
        return [(p["name"], f"scale_info::{p['type']}") for p in self.apis[api][method]["inputs"]]

    # ------------------------------------------------------------------------------------- storage
    @functools.cache  # noqa: B019 - one Runtime lives as long as the node
    def storage_item(self, pallet: str, name: str) -> StorageItem:
        pallet_meta = self.metadata.get_metadata_pallet(pallet)
        function = pallet_meta.get_storage_function(name)
        item = StorageItem(
            pallet=pallet,
            name=name,
            prefix=xxh128(pallet_meta.value["storage"]["prefix"].encode()) + xxh128(name.encode()),
            param_types=tuple(function.get_params_type_string()),
            hashers=tuple(function.get_param_hashers()),
            value_type=function.get_value_type_string(),
        )
        self._storage[item.prefix] = item
        return item

    def storage_key(self, item: StorageItem, *params: Any) -> bytes:
        key = item.prefix
        for value, type_string, hasher in zip(params, item.param_types, item.hashers, strict=False):
            key += _hash_part(hasher, self.encode(type_string, value))
        return key

    def item_for_key(self, key: bytes) -> StorageItem | None:
        """Which modelled storage item a key (or key prefix) belongs to, by its first 32 bytes."""
        return self._storage.get(bytes(key[:32]))

    # -------------------------------------------------------------------------------------- errors
    @functools.cache  # noqa: B019
    def module_error(self, pallet: str, name: str) -> tuple[int, int] | None:
        """(pallet index, error index) of a module error, or None if this runtime has no such error."""
        pallet_meta = self.metadata.get_metadata_pallet(pallet)
        for error in pallet_meta.errors or ():
            if error.value["name"] == name:
                return self._pallet_index[pallet], int(error.value["index"])
        return None

    def call_index(self, pallet: str) -> int:
        return int(self._pallet_index[pallet])


def ss58(public_key: bytes | str) -> str:
    from scalecodec.utils.ss58 import ss58_encode

    return str(ss58_encode(public_key if isinstance(public_key, str) else "0x" + public_key.hex()))


def account_hex(ss58_address: str) -> str:
    from scalecodec.utils.ss58 import ss58_decode

    return "0x" + str(ss58_decode(ss58_address))


def hexstr(data: bytes | Sequence[int]) -> str:
    return "0x" + bytes(data).hex()
