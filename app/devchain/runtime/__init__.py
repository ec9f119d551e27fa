"""The subtensor runtime the local node serves, shipped with Pylon as package data.

- `metadata_v15.json.gz`: the SCALE-encoded MetadataV15 of a real subtensor runtime (spec version 318, the
  "mechanisms" era: `set_mechanism_weights`, `commit_timelocked_mechanism_weights`, `serve_axon`,
  `serve_axon_tls`) as a JSON hex string, exactly what `state_call("Metadata_metadata_at_version",
  "0x0f000000")` returns, gzip-compressed.
- `runtime_version.json`: the matching `state_getRuntimeVersion` answer.

Source: the public test data of the turbobt project (bactensor/turbobt, `tests/test_substrate/data/`,
commit eecc316), BSD 3-Clause licence, copyright 2025 bactensor: see `LICENSE` beside these files.

To serve another runtime, record it from a live node with `pylon chain dump-metadata --network URL --out DIR`
and pass `pylon localnet --metadata-dir DIR` (or `PYLON_CHAIN_METADATA_DIR`); to replace the shipped one,
gzip the recorded `metadata_v15.json` into this folder (`gzip -9n`) beside its `runtime_version.json`.
"""
