"""The IO manager: frames stay in memory for the rest of the run and are written once to disk.

Within a run (the in-process executor runs every step in one process) a downstream asset gets the very
object its upstream returned, with no copy and no read back; an entry is dropped once all its consumers
have it, so memory holds only what is still needed. On disk, a raw frame is a pointer to the run's
source snapshot (immutable, kept as the run's backup) and is read from it again when needed; any other
value is pickled. The files serve later runs that re-execute a subset ("re-execute from failure",
materializing one asset in the UI).
"""

import json
import pickle
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

# (asset key path) -> (run id, value, loads left). One process runs one run at a time.
_MEMORY: dict[tuple[str, ...], list] = {}


class FrameIOManager(dg.ConfigurableIOManager):
    """Keeps outputs in memory for the run and on disk (pickle, or a pointer to the snapshot) for later runs."""

    base_dir: str = ".migration/storage"
    consumers: dict[str, int] = Field(default_factory=dict, description="asset -> how many assets read it")

    def _path(self, key: dg.AssetKey, suffix: str) -> Path:
        return Path(self.base_dir, *key.path).with_suffix(suffix)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        key = context.asset_key
        pickled, pointer = self._path(key, ".pickle"), self._path(key, ".snapshot.json")
        pickled.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, pd.DataFrame) and "snapshot" in obj.attrs:
            pointer.write_text(
                json.dumps({"snapshot": obj.attrs["snapshot"], "table": obj.attrs["source_table"]})
            )
            pickled.unlink(missing_ok=True)
        else:
            tmp = pickled.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(pickled)  # a crash mid-write never leaves a truncated value behind
            pointer.unlink(missing_ok=True)
        loads = self.consumers.get(key.to_user_string(), -1)  # -1: unknown, keep for the whole run
        _MEMORY[tuple(key.path)] = [context.run_id, obj, loads]

    def load_input(self, context: dg.InputContext):
        key = context.asset_key
        upstream_run = context.upstream_output.run_id if context.upstream_output else None
        entry = _MEMORY.get(tuple(key.path))
        if entry is not None and entry[0] == upstream_run:
            entry[2] -= 1
            if entry[2] == 0:
                del _MEMORY[tuple(key.path)]
            return entry[1]
        pickled, pointer = self._path(key, ".pickle"), self._path(key, ".snapshot.json")
        if pointer.exists():
            from agent_migration.assets.extract import read_snapshot_table  # the assets import this module

            ref = json.loads(pointer.read_text())
            if not Path(ref["snapshot"]).exists():
                raise dg.Failure(
                    description=f"{key.to_user_string()} was read from the snapshot {ref['snapshot']}, which is "
                    "no longer kept; materialize source_snapshot and the raw_ assets again."
                )
            return read_snapshot_table(ref["snapshot"], ref["table"])
        if not pickled.exists():
            raise dg.Failure(
                description=f"{key.to_user_string()} has not been materialized yet (no {pickled}); "
                "materialize it (or everything) first."
            )
        with open(pickled, "rb") as f:
            return pickle.load(f)
