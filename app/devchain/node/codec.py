"""SCALE encoding with a real subtensor runtime's type registry.

The node never hand-writes SCALE: it loads the runtime's MetadataV15 (the exact `Metadata_metadata_at_version`
answer recorded from a live node) into scalecodec the same way turbobt does, and encodes and decodes
through the types the metadata names (`scale_info::<id>`),
so what turbobt decodes matches field for field.

A recorded runtime ships with Pylon (`app/devchain/runtime/`); `pylon chain dump-metadata` records another
from a live node, and `find_metadata_dir()` says which one is used.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import xxhash
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset

METADATA_FILE = "metadata_v15.json"
# The same answer gzip-compressed: how Pylon ships it (a recorded folder may hold either).
METADATA_FILE_GZ = METADATA_FILE + ".gz"
RUNTIME_VERSION_FILE = "runtime_version.json"
METADATA_DIR_VARIABLE = "PYLON_CHAIN_METADATA_DIR"
# The package holding the runtime shipped with Pylon.
SHIPPED_RUNTIME = "app.devchain.runtime"


class MetadataMissing(FileNotFoundError):
    """No recorded runtime metadata where Pylon looked; the message says how to get it."""


def _metadata_file(folder: Traversable) -> Traversable | None:
    for name in (METADATA_FILE, METADATA_FILE_GZ):
        if (folder / name).is_file():
            return folder / name
    return None


def find_metadata_dir(explicit: str | os.PathLike[str] | None = None) -> Traversable:
    """The folder holding the metadata (`metadata_v15.json` or `.json.gz`) and `runtime_version.json`.

    `explicit`, else `PYLON_CHAIN_METADATA_DIR`, else the runtime shipped with Pylon.
    """
    chosen = explicit or os.environ.get(METADATA_DIR_VARIABLE)
    if not chosen:
        return resources.files(SHIPPED_RUNTIME)
    folder = Path(chosen)
    if _metadata_file(folder) is not None and (folder / RUNTIME_VERSION_FILE).is_file():
        return folder
    raise MetadataMissing(
        f"no runtime metadata ({METADATA_FILE} or {METADATA_FILE_GZ}, and {RUNTIME_VERSION_FILE}) in "
        f"{folder}; record it from a live node with `pylon chain dump-metadata --network URL --out DIR` "
        f"and pass --metadata-dir DIR (or set {METADATA_DIR_VARIABLE}), or unset both for the runtime "
        f"shipped with Pylon"
    )


def read_recorded(folder: Traversable) -> tuple[Any, Any]:
    """The two recorded answers in a folder: the metadata (a hex string) and the runtime version."""
    metadata = _metadata_file(folder)
    if metadata is None:
        raise MetadataMissing(f"{folder}: no {METADATA_FILE} or {METADATA_FILE_GZ}")
    raw = metadata.read_bytes()
    if metadata.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return json.loads(raw), json.loads((folder / RUNTIME_VERSION_FILE).read_text())


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
        """The runtime recorded in `path` (see `find_metadata_dir`), by default the one shipped with Pylon."""
        folder = find_metadata_dir(path)
        answer, version = read_recorded(folder)
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

    @functools.cached_property
    def storage_names(self) -> dict[bytes, tuple[str, str]]:
        """Every storage item of the metadata by its 32-byte key prefix: (pallet, item)."""
        names: dict[bytes, tuple[str, str]] = {}
        for pallet in self.metadata.value[1]["V15"]["pallets"]:
            storage = pallet.get("storage")
            for entry in (storage or {}).get("entries", ()):
                prefix = xxh128(storage["prefix"].encode()) + xxh128(entry["name"].encode())
                names[prefix] = (pallet["name"], entry["name"])
        return names

    def has_storage(self, pallet: str, name: str) -> bool:
        """Whether this runtime's metadata has the storage item (newer runtimes drop and rename some)."""
        pallet_meta = self.metadata.get_metadata_pallet(pallet)
        return pallet_meta is not None and pallet_meta.get_storage_function(name) is not None

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
