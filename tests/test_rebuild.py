"""tasks/rebuild.py: content-addressed versions, the code closure, the gate's refusals, idempotent
commit (with real kills), bounded memory on lying image sizes, and disk full — all without Prefect."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xxhash

from schemas.errors import AnnotationFormatError, DiskFullError, SourceError, ValidationFailedError
from storage.fs import filesystem
from storage.manifest import read_latest, read_manifest
from storage.parquet import read_parquet
from tasks import rebuild as stages
from tasks.synthetic import write_synthetic_coco
from tasks.transforms.geometry import CropConfig
from tests.conftest import REPO_ROOT
from tests.helpers import build_shards, build_version

SMALL = CropConfig(out_height_px=32, out_width_px=24)


def _files(vdir: Path) -> dict[str, str]:
    """sha256 of every file of a version folder except the run log (which holds times and pids)."""
    return {
        p.relative_to(vdir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(vdir.rglob("*"))
        if p.is_file() and p.name != "_run.json"
    }


def _reasons(root: str, dataset: str, version: str) -> collections.Counter:
    fs, path = filesystem(root)
    t = read_parquet(fs, f"{path}/datasets/{dataset}/{version}/_rejects.parquet")
    return collections.Counter(t.column("reason").to_pylist())


@pytest.fixture
def mini(tmp_path, shared_data) -> Path:
    src = tmp_path / "mini"
    shutil.copytree(shared_data / "coco/coco_mini_val2017", src)
    return src


# --- versions are content-addressed ----------------------------------------------------------


def test_same_size_image_change_makes_a_new_version_and_repair_reuses_the_clean_one(tmp_path, mini):
    """Fault #13: 2,000 bytes flipped in one JPEG (same size) used to keep the clean id."""
    root = str(tmp_path / "root")
    clean = build_version(root, str(mini), crop=SMALL)
    image = mini / "images/000000214753.jpg"
    original = image.read_bytes()
    damaged = bytearray(original)
    for i in range(len(damaged) // 3, len(damaged) // 3 + 2000):
        damaged[i] ^= 0x5A
    image.write_bytes(bytes(damaged))
    assert len(damaged) == len(original)
    corrupt = build_version(root, str(mini), crop=SMALL)
    assert corrupt["version"] != clean["version"] and not corrupt["reused"]
    image.write_bytes(original)  # repaired: same bytes as the clean build, new mtime
    again = build_version(root, str(mini), crop=SMALL)
    assert again["version"] == clean["version"] and again["reused"]
    fs, path = filesystem(root)
    assert read_latest(fs, path, "coco") == clean["version"]
    m = read_manifest(fs, path, "coco", clean["version"])
    inputs = read_parquet(fs, f"{path}/datasets/coco/{clean['version']}/{m['inputs']['file']}")
    row = next(r for r in inputs.to_pylist() if r["path"] == "images/000000214753.jpg")
    assert row["digest"] == f"xxh3_128:{xxhash.xxh3_128(original).hexdigest()}" and row["size_bytes"] == len(original)
    assert m["inputs"]["digest"] == "xxh3_128 of each referenced file's content"
    assert m["inputs"]["files"] == inputs.num_rows == len(set(inputs.column("path").to_pylist()))
    assert m["inputs"]["sha256"] == hashlib.sha256((Path(path) / f"datasets/coco/{clean['version']}/_inputs.parquet").read_bytes()).hexdigest()


# --- the gate refuses what nobody should train on -------------------------------------------------


def _edit_annotations(src: Path, edit) -> None:
    path = src / "person_keypoints_val2017.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_absurd_boxes_and_nan_visible_joints_are_rejected_at_parse(tmp_path, mini):
    """Faults #18 and #20: these were written as black crops and 'validated'."""
    bad = {}

    def edit(doc):
        anns = [a for a in doc["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
        anns[0]["bbox"], anns[1]["bbox"], anns[2]["bbox"] = [0, 0, 1e30, 1e30], [1e300] * 4, [-1e9, -1e9, 50, 50]
        anns[3]["keypoints"][0:3] = [float("nan"), 100.0, 2]
        bad.update({str(anns[0]["id"]): "box_outside_image", str(anns[1]["id"]): "invalid_box", str(anns[2]["id"]): "box_outside_image", str(anns[3]["id"]): "nonfinite_keypoint"})

    _edit_annotations(mini, edit)
    root = str(tmp_path / "root")
    s = build_version(root, str(mini), crop=SMALL)
    assert s["validation"] == "passed" and s["written"] == 64 and s["written"] + s["rejected"] == s["parsed"] == 118
    fs, path = filesystem(root)
    rejects = read_parquet(fs, f"{path}/datasets/coco/{s['version']}/_rejects.parquet").to_pylist()
    got = {r["source_key"]: r["reason"] for r in rejects if r["source_key"] in bad}
    assert got == bad and all(r["stage"] == "parse" for r in rejects if r["source_key"] in bad)


def test_flic_absurd_coordinates_and_zero_image_size_are_rejected(tmp_path):
    """Fault #34: FLIC coords = 1e30 and imgdims = [0 0 3] were accepted."""
    from tests.datasets.fakes_flic import write_fake_flic

    fake = write_fake_flic(tmp_path / "flic", n=8, overrides={0: {"coords": np.full((2, 29), 1e30)}, 5: {"imgdims": np.array([[0, 0, 3]], dtype=np.uint16)}})
    plan = stages._plan(stages.RebuildRequest("flic", str(tmp_path / "root"), str(fake.root)), str(fake.root))
    reasons = dict(zip(plan.rejects.column("source_key").to_pylist(), plan.rejects.column("reason").to_pylist(), strict=True))
    # example 0 (all 29 joints at 1e30): its box collapses to one far point; example 5 has imgdims 0x0
    assert reasons == {f"{fake.filepaths[0]}:0": "invalid_box", f"{fake.filepaths[5]}:0": "image_size_invalid"}
    assert plan.records.num_rows + plan.rejects.num_rows == plan.prepared.parsed


def test_empty_annotations_never_become_a_validated_version(tmp_path, mini):
    """Fault #24: an empty annotations list committed an empty version and moved LATEST."""
    root = str(tmp_path / "root")
    good = build_version(root, str(mini), crop=SMALL)
    _edit_annotations(mini, lambda doc: doc.update(annotations=[]))
    with pytest.raises(SourceError, match="nothing to write") as err:
        build_version(root, str(mini), crop=SMALL)
    assert "empty annotations list" in err.value.hint
    fs, path = filesystem(root)
    assert read_latest(fs, path, "coco") == good["version"]
    assert [p.name for p in (tmp_path / "root/datasets/coco").glob("v-*")] == [good["version"]]


def test_a_split_whose_every_sample_is_rejected_is_an_error(tmp_path):
    """Zero rows written for a split that had inputs: refused at commit, LATEST untouched."""
    src = write_synthetic_coco(tmp_path / "syn", {"train": 3, "val": 2}, seed=3)
    for image in (src / "val2017").glob("*.jpg"):
        image.write_bytes(b"")  # every val image unreadable
    root = str(tmp_path / "root")
    with pytest.raises(ValidationFailedError, match=r"split\(s\) val have no rows"):
        build_version(root, str(src), crop=SMALL, max_reject_ratio=1.0)
    fs, path = filesystem(root)
    assert read_latest(fs, path, "coco") is None
    (vdir,) = (tmp_path / "root/datasets/coco").glob("v-*")
    assert not (vdir / "_manifest.json").exists() and (vdir / "_rejects.parquet").exists()


def test_bad_json_shapes_are_one_clear_error_or_rejects(tmp_path, mini):
    """Faults #25, #26, #29: raw tracebacks (int('abc'), list.get) and a whole-parse schema error."""
    coco = stages.get_adapter("coco")
    ann = mini / "person_keypoints_val2017.json"
    doc = json.loads(ann.read_text())
    target = doc["images"][0]["id"]
    users = [a["id"] for a in doc["annotations"] if a["image_id"] == target]
    doc["images"][0]["id"] = "abc"
    for a in doc["annotations"]:
        if a["image_id"] == target:
            a["image_id"] = "abc"
    doc["images"][1]["file_name"] = "\udcff\udcfe" + doc["images"][1]["file_name"]
    second = [a["id"] for a in doc["annotations"] if a["image_id"] == doc["images"][1]["id"]]
    ann.write_text(json.dumps(doc))  # JSON escapes keep the lone surrogates, as in the fault
    r = coco.parse(mini, coco.make_params())
    reasons = dict(zip(r.rejects.column("source_key").to_pylist(), r.rejects.column("reason").to_pylist(), strict=True))
    assert r.parsed == 118 and all(reasons[str(a)] == "malformed_annotation" for a in users)
    details = dict(zip(r.rejects.column("source_key").to_pylist(), r.rejects.column("detail").to_pylist(), strict=True))
    assert "images[0] has id 'abc'" in details[str(users[0])]
    assert {reasons[str(a)] for a in second} <= {"path_not_utf8", "zero_keypoints", "crowd"} and "path_not_utf8" in {reasons[str(a)] for a in second}
    doc["images"][0]["id"] = None
    ann.write_text(json.dumps(doc))
    assert coco.parse(mini, coco.make_params()).parsed == 118  # null id: rejects again, no TypeError
    ann.write_text("[]")
    with pytest.raises(AnnotationFormatError, match=r"person_keypoints_val2017.json: the top level is a JSON list"):
        coco.parse(mini, coco.make_params())


# --- commit is idempotent, also after a real kill -------------------------------------------------

_KILLABLE_COMMIT = """
import pickle, sys, time
import tasks.rebuild as stages
args_file, hook_name, suffix, signal_file = sys.argv[1:5]
original = getattr(stages, hook_name)
def hooked(fs, *args):
    out = original(fs, *args)
    if str(args[0] if hook_name == "write_json" else args[1]).endswith(suffix):
        open(signal_file, "w").close()
        time.sleep(120)  # killed here
    return out
setattr(stages, hook_name, hooked)
with open(args_file, "rb") as fh:
    stages.commit(*pickle.load(fh))
"""


@pytest.mark.parametrize(("hook", "suffix"), [("write_json", "_run.json"), ("write_manifest", "")])
def test_commit_killed_late_then_retried_ends_with_the_same_bytes(tmp_path, hook, suffix):
    """Fault #64: a retried commit after its process died (after _run.json, or after the manifest)."""
    src = write_synthetic_coco(tmp_path / "syn", {"train": 3, "val": 2}, seed=5)
    clean = build_version(str(tmp_path / "clean"), str(src), crop=SMALL)
    root = str(tmp_path / "root")
    prepared = stages.prepare(stages.RebuildRequest("coco", root, str(src), crop=SMALL))
    results = build_shards(prepared)
    args = tmp_path / "args.pkl"
    args.write_bytes(pickle.dumps((root, prepared, results, 0.5, {})))
    signal_file = tmp_path / "reached"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE_COMMIT, str(args), hook, suffix, str(signal_file)], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 120
        while not signal_file.exists():
            assert proc.poll() is None, "the commit process exited before the kill point"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    fs, path = filesystem(root)
    assert read_latest(fs, path, "coco") is None  # the kill came before LATEST moved
    again = stages.commit(root, prepared, results, 0.5, {})  # what a retry of the commit does
    assert again == {**clean, "location": again["location"]}
    vdir = tmp_path / "root/datasets/coco" / prepared.version
    assert _files(vdir) == _files(tmp_path / "clean/datasets/coco" / clean["version"])
    assert not (vdir / "_staging").exists() and read_latest(fs, path, "coco") == prepared.version
    assert stages.commit(root, prepared, results, 0.5, {}) == again  # and once more: still the same


# --- memory is never sized from the annotation ---------------------------------------------------

# VmHWM is this process image's own peak RSS (getrusage's ru_maxrss survives exec, so it can report
# the forking parent's size: pytest after the TensorFlow tests is ~1.8 GB)
_BUILD_AND_REPORT_RSS = r"""
import json, re, sys
from tasks.transforms.geometry import CropConfig
from tests.helpers import build_version
s = build_version(sys.argv[1], sys.argv[2], crop=CropConfig(out_height_px=32, out_width_px=24), max_reject_ratio=1.0)
peak_kb = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"summary": s, "max_rss_kb": peak_kb}))
"""


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its SOF0 frame header claiming ``width`` × ``height``."""
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[i + 9 :]


def test_lying_image_sizes_never_drive_allocation(tmp_path, mini):
    """Fault #14: JSON 60000×40000 took a worker to 7.5 GB, 200000×200000 killed the rebuild."""
    doc = json.loads((mini / "person_keypoints_val2017.json").read_text())
    people = collections.Counter(a["image_id"] for a in doc["annotations"] if a["num_keypoints"] and not a["iscrowd"])
    ids = [i for i, _ in people.most_common()][:4]
    by_id = {img["id"]: img for img in doc["images"]}
    by_id[ids[0]].update(width=60000, height=40000)
    by_id[ids[1]].update(width=200000, height=200000)
    by_id[ids[2]].update(width=9000, height=9000)  # under the cap, but not what the file says
    header_liar = mini / "images" / by_id[ids[3]]["file_name"]  # the file's header claims 20000×20000
    header_liar.write_bytes(_patch_jpeg_size(header_liar.read_bytes(), 20000, 20000))
    (mini / "person_keypoints_val2017.json").write_text(json.dumps(doc))
    out = subprocess.run([sys.executable, "-c", _BUILD_AND_REPORT_RSS, str(tmp_path / "root"), str(mini)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    s = report["summary"]
    assert s["written"] + s["rejected"] == s["parsed"] == 118
    assert s["rejects_by_reason"]["image_too_large"] == people[ids[0]] + people[ids[1]] + people[ids[3]]
    assert s["rejects_by_reason"]["image_size_mismatch"] == people[ids[2]]
    assert report["max_rss_kb"] < 1_000_000, report["max_rss_kb"]  # 7.5 GB before; ~0.3 GB now


# --- disk full -----------------------------------------------------------------------------------


def _no_tmp_files(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".tmp-" in p.name]


def test_disk_full_names_the_place_and_leaves_nothing_half_written(tmp_path):
    """Fault #60: a rebuild on a full root gave a raw ENOSPC traceback with no path."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the file-size-limit test covers the message")
    try:
        root = mount / "root"
        src = write_synthetic_coco(tmp_path / "syn", {"train": 30, "val": 4}, seed=2)
        with pytest.raises(DiskFullError, match=r"no room while writing .*: writing .*/small/root/datasets/coco/v-\w+/.* failed: the filesystem is full") as err:
            build_version(str(root), str(src))  # 256×192 crops: ~15 MB of shards
        assert "choose another --root" in err.value.hint and "LATEST is unchanged" in err.value.hint
        assert err.value.filesystem == str(mount) and "bytes free" in err.value.message
        assert _no_tmp_files(root) == [] and read_latest(*filesystem(str(root)), "coco") is None
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


_FSIZE_LIMITED = """
import resource, signal, sys
from schemas.errors import PosepipeError
from tests.helpers import build_shards, build_version
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill, like a quota
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    build_version(sys.argv[1], sys.argv[2])
except PosepipeError as exc:
    print(type(exc).__name__, "|", exc.message, "|", exc.hint)
"""


def test_file_size_limit_is_reported_like_disk_full(tmp_path):
    src = write_synthetic_coco(tmp_path / "syn", {"train": 6, "val": 2}, seed=2)
    root = tmp_path / "root"
    out = subprocess.run([sys.executable, "-c", _FSIZE_LIMITED, str(root), str(src)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    kind, message, hint = (part.strip() for part in out.stdout.strip().splitlines()[-1].split("|"))
    assert kind == "DiskFullError" and "the file passes the file size limit" in message and "/root/datasets/coco/" in message
    assert "ulimit -f" in hint and _no_tmp_files(root) == []


def test_the_run_record_says_where_the_time_went(tmp_path):
    src = write_synthetic_coco(tmp_path / "src", {"val": 6}, seed=3, size_wh=(160, 120))
    root = str(tmp_path / "root")
    summary = stages.run(stages.RebuildRequest("coco", root, str(src), crop=SMALL, shard_size=4))
    run = json.loads((Path(summary["location"]) / "_run.json").read_text())
    stages_s = run["stages_s"]
    assert set(stages_s) == {"parse", "shards_wall", "build_worker", "validate_worker", "commit"}
    assert all(v >= 0 for v in stages_s.values()) and stages_s["validate_worker"] > 0 and run["shards"] >= 2
    assert "stages_s" not in json.loads((Path(summary["location"]) / "_manifest.json").read_text())  # times never reach the id's files


def test_the_plan_named_before_the_orchestrator_starts_is_parsed_once_and_only_for_its_request(tmp_path, monkeypatch):
    """plan_version's parse is handed to the prepare of the same request (once); any other request parses."""
    src = write_synthetic_coco(tmp_path / "src", {"val": 6}, seed=3, size_wh=(160, 120))
    root = str(tmp_path / "root")
    parses: list[str] = []
    real_plan = stages._plan
    monkeypatch.setattr(stages, "_plan", lambda request, source: parses.append(request.root) or real_plan(request, source))
    request = stages.RebuildRequest("coco", root, str(src), crop=SMALL, shard_size=4)
    named = stages.plan_version(request)
    other = stages.RebuildRequest("coco", str(tmp_path / "other"), str(src), crop=SMALL, shard_size=4)
    assert stages.prepare(other).version == named.version and parses == [root, other.root]  # another request: its own parse
    stages.plan_version(request)
    summary = stages.run(request)
    assert parses == [root, other.root, root] and summary["version"] == named.version and not summary["reused"]
    stages.prepare(stages.RebuildRequest("coco", str(tmp_path / "third"), str(src), crop=SMALL, shard_size=4))
    assert len(parses) == 4  # taken at most once: the slot is empty now
    plain = str(tmp_path / "plain")
    assert _files(Path(stages.run(stages.RebuildRequest("coco", plain, str(src), crop=SMALL, shard_size=4))["location"])) == _files(Path(summary["location"]))
