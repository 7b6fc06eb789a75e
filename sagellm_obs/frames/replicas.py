"""A client run's replicas: the run folders its manifest names, found on this machine.

``sagellm-obs run --endpoint URL1,URL2`` asks each replica (``GET /v1/sagellm/run`` of
``sagellm-obs serve``) for its engine id, run id and run folder and records them in the client's
``manifest.json`` under ``replicas``. :func:`with_replicas` adds those folders to a list of
sources, so loading the client run alone loads the fleet. A replica's folder is looked for where
the replica said it writes, then beside the client's folder (runs copied together to another
machine keep their names); a folder counts only when its manifest has the recorded run id.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagellm_obs.store.layout import MANIFEST

__all__ = ["MissingReplicasWarning", "ReplicaFolders", "recorded_replicas", "with_replicas"]

REPLICAS_KEY = "replicas"
"""The client manifest's list of replicas: ``endpoint``, ``engine_id``, ``run_id``,
``run_dir``, ``model``, ``data_parallel_size``, and ``problem`` when the replica could not say."""


class MissingReplicasWarning(UserWarning):
    """A client run names replica run folders that are not readable on this machine."""


@dataclass
class ReplicaFolders:
    """The sources with the replica folders their manifests name.

    Attributes:
        paths: The sources given, then each replica folder found that was not among them.
        found: The replica folders added or already given, in the manifests' order.
        missing: One line per replica whose folder was not found (endpoint, run id, where).
        missing_runs: ``(run id, recorded run folder)`` of each of ``missing``.
    """

    paths: list[Path]
    found: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    missing_runs: list[tuple[str, Path]] = field(default_factory=list)

    def warn(self, stacklevel: int = 2) -> None:
        """One :class:`MissingReplicasWarning` naming every replica folder not found;
        ``stacklevel`` as :func:`warnings.warn`'s, counted from the caller of this method."""
        if self.missing:
            text = missing_text(self.missing)
            warnings.warn(text, MissingReplicasWarning, stacklevel=stacklevel + 1)


def missing_text(missing: Sequence[str]) -> str:
    """The message naming replica folders that were not found."""
    return (
        f"{len(missing)} replica run folder(s) not found on this machine, loaded without them: "
        + "; ".join(missing)
    )


def recorded_replicas(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The replica entries of a client run's manifest ([] when it has none)."""
    entries = manifest.get(REPLICAS_KEY)
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict)]


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _locate(entry: dict[str, Any], client: Path) -> Path | None:
    """Where the replica's run folder is on this machine, or None."""
    run_id = entry.get("run_id")
    recorded = entry.get("run_dir")
    candidates: list[Path] = []
    if isinstance(recorded, str) and recorded:
        candidates += [Path(recorded), client.parent / Path(recorded).name]
    if isinstance(run_id, str) and run_id:
        candidates.append(client.parent / run_id)
    for folder in candidates:
        if folder.is_dir() and (not run_id or _manifest(folder).get("run_id") == run_id):
            return folder
    return None


def _describe(entry: dict[str, Any]) -> str:
    endpoint = entry.get("endpoint") or "?"
    if entry.get("problem"):
        return f"{endpoint} ({entry['problem']})"
    where = entry.get("run_dir") or "a folder it did not name"
    return f"{endpoint} (run {entry.get('run_id') or '?'} in {where})"


def with_replicas(paths: Sequence[Path]) -> ReplicaFolders:
    """``paths`` with the replica folders that client runs among them name (see the module).

    A folder given already is not added twice; a replica whose folder is not readable here is
    named in ``missing``.
    """
    out = ReplicaFolders(paths=list(paths))
    seen = {_key(p) for p in paths}
    for path in paths:
        if not path.is_dir():
            continue
        for entry in recorded_replicas(_manifest(path)):
            folder = _locate(entry, path)
            if folder is None:
                out.missing.append(_describe(entry))
                run_id = str(entry.get("run_id") or "?")
                out.missing_runs.append((run_id, Path(entry.get("run_dir") or run_id)))
                continue
            out.found.append(folder)
            if _key(folder) not in seen:
                seen.add(_key(folder))
                out.paths.append(folder)
    return out


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()
