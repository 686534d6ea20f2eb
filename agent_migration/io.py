"""The IO manager: frames stay in memory for the rest of the run and are written once to disk.

Within a run (the in-process executor runs every step in one process) a downstream asset gets the very
object its upstream returned, with no copy and no read back. The pickle on disk serves later runs
that re-execute a subset ("re-execute from failure", materializing one asset in the UI).
"""

import pickle
from pathlib import Path

import dagster as dg

# (asset key path) -> (run id, value). One process runs one run, so this never outlives the run's frames.
_MEMORY: dict[tuple[str, ...], tuple[str, object]] = {}


class FrameIOManager(dg.ConfigurableIOManager):
    """Keeps outputs in memory for the run and pickles them under `base_dir` for later runs."""

    base_dir: str = ".migration/storage"

    def _path(self, key: dg.AssetKey) -> Path:
        return Path(self.base_dir, *key.path).with_suffix(".pickle")

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        path = self._path(context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)  # a crash mid-write never leaves a truncated frame behind
        _MEMORY[tuple(context.asset_key.path)] = (context.run_id, obj)

    def load_input(self, context: dg.InputContext):
        key = context.asset_key
        cached = _MEMORY.get(tuple(key.path))
        upstream_run = context.upstream_output.run_id if context.upstream_output else None
        if cached is not None and cached[0] == upstream_run:
            return cached[1]
        path = self._path(key)
        if not path.exists():
            raise dg.Failure(
                description=f"{key.to_user_string()} has not been materialized yet (no {path}); "
                "materialize it (or everything) first."
            )
        with open(path, "rb") as f:
            return pickle.load(f)
