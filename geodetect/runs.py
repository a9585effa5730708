"""Resumable runs: one part per scene, written atomically, and a manifest.

``run(scenes, detector, out_dir)`` writes ``out_dir/parts/<scene>.parquet``
for each scene (temporary name, then rename) and records it in
``out_dir/manifest.json`` (also replaced atomically) only after the part is in
place. A run killed at any moment and started again with ``resume=True``
skips exactly the scenes the manifest records as done with their part present;
a scene interrupted half-way is simply done again, its part overwritten, so
nothing is lost and nothing counted twice. ``out_dir/detections.parquet``
joins the parts at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from geodetect.errors import ConfigError, GeodetectError, OutputError

__all__ = ["run", "RunSummary", "MANIFEST", "EXIT_PARTIAL"]

MANIFEST = "manifest.json"
EXIT_PARTIAL = 3  # CLI exit code when some scenes failed and the others were written


@dataclass
class RunSummary:
    out_dir: str
    done: list = field(default_factory=list)  # scene ids processed in this run
    skipped: list = field(default_factory=list)  # scene ids already done (resume)
    failed: dict = field(default_factory=dict)  # scene id -> error message
    detections: int = 0
    output: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def _part_name(scene_id: str) -> str:
    """A file name for a scene id that cannot leave the parts folder."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", scene_id).strip("._") or "scene"
    digest = hashlib.sha1(scene_id.encode()).hexdigest()[:8]
    return f"{safe[:80]}-{digest}.parquet"


def _write_json_atomic(path: Path, data) -> None:
    from geodetect._atomic import atomic_output

    with atomic_output(path, what="the manifest") as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())


def _fingerprint(path: str) -> dict:
    try:
        st = os.stat(path)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {}


def _load_manifest(out: Path) -> dict:
    p = out / MANIFEST
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise OutputError(f"{p}: manifest is unreadable ({exc}); remove it to start the run afresh") from None


LOCK = ".geodetect-run.lock"


class _RunLock:
    """An exclusive lock on a run folder while a run writes it (``out_dir/.geodetect-run.lock``).

    ``flock`` on POSIX (``msvcrt.locking`` on Windows): the kernel drops it when the process
    ends, however it ends, so a killed run never leaves the folder locked. A second run into
    the same folder is refused instead of both writing the manifest and one scene's rows being lost.
    """

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.f = None

    def __enter__(self):
        self.f = open(self.path, "a+")
        try:
            if os.name == "nt":  # pragma: no cover - Windows
                import msvcrt

                msvcrt.locking(self.f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self.f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.f.seek(0)
            holder = self.f.read().strip() or "another process"
            self.f.close()
            raise OutputError(
                f"{self.path.parent}: another run is writing this folder ({holder}); wait for it to finish, "
                "or give this run its own --out folder"
            ) from None
        self.f.seek(0)
        self.f.truncate()
        self.f.write(f"pid {os.getpid()}")
        self.f.flush()
        return self

    def __exit__(self, *exc):
        try:
            self.f.seek(0)
            self.f.truncate()
        finally:
            self.f.close()  # releases the lock


def _part_ok(part: Path) -> bool:
    """A part file that is really there and readable as Parquet (a torn copy or a disk error is not)."""
    try:
        import pyarrow.parquet as pq

        pq.read_metadata(part)
        return True
    except Exception:  # noqa: BLE001 - any unreadable part is redone
        return False


def run(scenes, detector, out_dir, *, resume: bool = False, fail_fast: bool = False, scene_ids=None, **options):
    """Detect scene by scene into ``out_dir``; returns a :class:`RunSummary`.

    ``options`` are those of :func:`geodetect.detect`. With ``resume=True`` the
    scenes recorded as done (same detector, version and options) are skipped;
    a done scene whose part is missing or unreadable is done again. The folder is
    locked while the run writes it: a second run into it at the same time is refused.
    """
    from geodetect.pipeline import make_options
    from geodetect.plugins.registry import resolve_detector

    out = Path(os.fspath(out_dir))
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; give a folder for a resumable run")
    det = resolve_detector(detector)
    opts = make_options(det.spec, **options)  # every option checked before the folder is made
    try:
        (out / "parts").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the run folder ({exc.strerror or exc})") from None
    with _RunLock(out):
        return _run_locked(scenes, det, opts, out, resume=resume, fail_fast=fail_fast, scene_ids=scene_ids)


def _run_locked(scenes, det, opts, out: Path, *, resume, fail_fast, scene_ids):
    import geopandas as gpd
    import pandas as pd

    from geodetect.frames import write
    from geodetect.pipeline import detect_scene, scene_id_of

    from geodetect.stac import expand_scenes

    sources = expand_scenes(scenes)  # a STAC ItemCollection: one scene per item, its label as the path
    paths = [os.fspath(p) for p in sources]
    ids = list(scene_ids) if scene_ids is not None else [scene_id_of(p) for p in sources]
    sources = dict(zip(paths, sources))
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[0]
        raise ConfigError(f"scenes share the id {dup!r} (file stem); every scene needs its own id")
    key = {"detector": det.spec.name, "version": det.spec.version, "classes": list(det.spec.classes),
           "options": {k: repr(v) for k, v in sorted(opts.__dict__.items()) if k not in ("progress",)}}
    manifest = _load_manifest(out)
    if manifest and not resume:
        raise OutputError(f"{out}: holds an earlier run ({MANIFEST}); pass --resume to continue it, or use a new folder")
    if manifest and manifest.get("run") != key:
        raise OutputError(
            f"{out}: the earlier run used other settings ({manifest.get('run', {}).get('detector')}); "
            "resume it with the same detector and options, or use a new folder"
        )
    manifest = manifest or {"run": key, "scenes": {}}
    summary = RunSummary(str(out))
    for path, sid in zip(paths, ids):
        entry = manifest["scenes"].get(sid)
        part = out / "parts" / _part_name(sid)
        if (resume and entry and entry.get("status") == "done" and part.exists()
                and entry.get("input") == _fingerprint(path) and _part_ok(part)):
            summary.skipped.append(sid)
            continue
        started = time.time()
        try:
            gdf, st = detect_scene(det, sources[path], opts, scene_id=sid)
        except GeodetectError as exc:
            manifest["scenes"][sid] = {"status": "failed", "path": path, "error": str(exc)}
            _write_json_atomic(out / MANIFEST, manifest)
            summary.failed[sid] = str(exc)
            if fail_fast:
                raise
            continue
        write(gdf, part)  # atomic: temporary name, then rename
        manifest["scenes"][sid] = {
            "status": "done", "path": path, "part": part.name, "detections": len(gdf),
            "input": _fingerprint(path), "seconds": round(time.time() - started, 3),
            "tiles_total": st.tiles_total, "tiles_run": st.tiles_run, "tiles_nodata": st.tiles_nodata,
            "notes": st.notes,
        }
        _write_json_atomic(out / MANIFEST, manifest)
        summary.done.append(sid)
    done_parts = [out / "parts" / v["part"] for v in manifest["scenes"].values() if v.get("status") == "done"]
    frames = []
    for p in sorted(done_parts):
        try:
            frames.append(gpd.read_parquet(p))
        except Exception as exc:  # noqa: BLE001 - changed under us since it was written
            raise OutputError(f"{p}: this scene's part cannot be read ({type(exc).__name__}); run again with "
                              "--resume to redo it") from None
    if frames:
        dets = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
        summary.detections = len(dets)
        summary.output = str(write(dets, out / "detections.parquet"))
    return summary
