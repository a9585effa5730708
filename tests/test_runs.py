"""Resumable runs: parts per scene, a manifest, resume after SIGKILL with nothing lost or doubled."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import geodetect as gd
from geodetect.errors import OutputError
from geodetect.runs import _part_name, run
from geodetect.testing import assert_detections_equal, make_scene


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    return [make_scene(d / f"rook{i}.tif", size=(768, 768), n_objects=25, seed=100 + i).path for i in range(6)]


@pytest.fixture(scope="module")
def reference(scenes):
    return gd.detect(scenes, "sea-lion-counter", progress=False)


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "geodetect.cli", "detect", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_run_writes_parts_manifest_and_output(tmp_path, scenes, reference):
    s = run(scenes, "sea-lion-counter", tmp_path / "run", progress=False)
    assert s.ok and len(s.done) == 6 and not s.skipped
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert all(v["status"] == "done" for v in man["scenes"].values()) and len(man["scenes"]) == 6
    assert_detections_equal(gd.read(s.output), reference)
    again = run(scenes, "sea-lion-counter", tmp_path / "run", resume=True, progress=False)
    assert again.skipped == s.done and not again.done
    assert_detections_equal(gd.read(again.output), reference)


def test_sigkill_at_any_moment_then_resume_gives_the_same_detections(tmp_path, scenes, reference):
    out = tmp_path / "killed"
    kills = 0
    for delay in (1.2, 0.3, 2.0, 0.8, 1.5):
        p = _cli(*scenes, "-d", "sea-lion-counter", "--out", str(out) + "/", "--resume", "--no-progress")
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.communicate()
    p = _cli(*scenes, "-d", "sea-lion-counter", "--out", str(out) + "/", "--resume", "--no-progress")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert kills >= 2, "the runs finished before they could be killed; the test proved nothing"
    assert_detections_equal(gd.read(out / "detections.parquet"), reference)
    leftovers = [f for f in os.listdir(out / "parts") if not f.endswith(".parquet") or f.startswith(".")]
    assert leftovers == [] or all(".tmp" in f for f in leftovers)  # only dead temporaries, never counted
    man = json.loads((out / "manifest.json").read_text())
    assert sum(v["detections"] for v in man["scenes"].values()) == len(reference)


def test_bad_scene_recorded_and_retried(tmp_path, scenes):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"")
    p = _cli(scenes[0], str(bad), scenes[1], "-d", "sea-lion-counter", "--out", str(tmp_path / "r") + "/",
             "--no-progress")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 3
    assert err.count("error: ") == 1 and str(bad) in err
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["scenes"]["broken"]["status"] == "failed" and "empty" in man["scenes"]["broken"]["error"]
    assert [k for k, v in man["scenes"].items() if v["status"] == "done"] == ["rook0", "rook1"]
    s = run([scenes[0], str(bad)], "sea-lion-counter", tmp_path / "r", resume=True, progress=False)
    assert s.skipped == ["rook0"] and "broken" in s.failed  # the failed scene is tried again


def test_resume_refuses_other_settings_and_fresh_run_refuses_old_folder(tmp_path, scenes):
    run(scenes[:1], "sea-lion-counter", tmp_path / "r", progress=False)
    with pytest.raises(OutputError, match="--resume"):
        run(scenes[:1], "sea-lion-counter", tmp_path / "r", progress=False)
    with pytest.raises(OutputError, match="other settings"):
        run(scenes[:1], "sea-lion-counter", tmp_path / "r", resume=True, tile_size=512, progress=False)


def test_scene_ids_cannot_escape_the_output_folder(tmp_path, scenes):
    for sid in ("../../evil", "/etc/passwd", "a/b\\c", "..", ""):
        name = _part_name(sid)
        assert "/" not in name and "\\" not in name and not name.startswith(".")
    s = run(scenes[:1], "sea-lion-counter", tmp_path / "r", scene_ids=["../../evil"], progress=False)
    assert s.ok
    assert not (tmp_path.parent / "evil.parquet").exists()
    assert len(list((tmp_path / "r" / "parts").iterdir())) == 1
