"""Where the local node's runtime comes from: the one shipped with Pylon, or a recorded folder."""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path

import pytest

from app.devchain.node.codec import (
    METADATA_DIR_VARIABLE,
    METADATA_FILE,
    METADATA_FILE_GZ,
    RUNTIME_VERSION_FILE,
    SHIPPED_RUNTIME,
    MetadataMissing,
    Runtime,
    find_metadata_dir,
    read_recorded,
)

SHIPPED = resources.files(SHIPPED_RUNTIME)


def record(folder: Path, *, compressed: bool) -> Path:
    """A folder as `pylon chain dump-metadata` writes it (or with the metadata gzipped)."""
    metadata, version = read_recorded(SHIPPED)
    folder.mkdir()
    if compressed:
        (folder / METADATA_FILE_GZ).write_bytes(gzip.compress(json.dumps(metadata).encode()))
    else:
        (folder / METADATA_FILE).write_text(json.dumps(metadata))
    (folder / RUNTIME_VERSION_FILE).write_text(json.dumps(version, indent=2))
    return folder


def test_pylon_ships_a_runtime_and_loads_it_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METADATA_DIR_VARIABLE, raising=False)
    assert (SHIPPED / METADATA_FILE_GZ).is_file() and (SHIPPED / RUNTIME_VERSION_FILE).is_file()
    # The turbobt test data's licence travels with it.
    assert "bactensor" in (SHIPPED / "LICENSE").read_text()
    assert find_metadata_dir() == SHIPPED
    runtime = Runtime.from_dir()
    assert runtime.spec_version == 318
    assert runtime.module_error("SubtensorModule", "SettingWeightsTooFast") is not None


@pytest.mark.parametrize("compressed", [False, True])
def test_an_explicit_folder_or_the_variable_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    explicit = record(tmp_path / "explicit", compressed=compressed)
    assert find_metadata_dir(explicit) == explicit
    assert read_recorded(explicit) == read_recorded(SHIPPED)
    monkeypatch.setenv(METADATA_DIR_VARIABLE, str(explicit))
    assert find_metadata_dir() == explicit
    # An explicit folder wins over the variable.
    other = record(tmp_path / "other", compressed=not compressed)
    assert find_metadata_dir(other) == other


def test_a_folder_without_metadata_says_how_to_record_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MetadataMissing, match="pylon chain dump-metadata") as caught:
        find_metadata_dir(tmp_path)
    assert str(tmp_path) in str(caught.value)
    monkeypatch.setenv(METADATA_DIR_VARIABLE, str(tmp_path / "absent"))
    with pytest.raises(MetadataMissing, match=METADATA_DIR_VARIABLE):
        find_metadata_dir()
