"""Fake MPII Human Pose data in the real on-disk formats, plus generic MATLAB writers.

* :func:`write_mat5` / :func:`write_mat73`: write a Python tree (dict = struct, list of dicts = struct
  array, other list = cell, str = char, None = ``[]``, numbers/arrays = double) as a MATLAB v5 file
  (``scipy.io.savemat``) or as a MATLAB v7.3 file (HDF5 with MATLAB's 512-byte header, ``#refs#``
  group, ``MATLAB_class`` attributes, column-major shapes, ``MATLAB_empty`` for ``[]``), the way
  MATLAB's ``save -v7.3`` lays them out.
* :func:`release_tree`: the nested ``RELEASE`` struct of ``mpii_human_pose_v1_u12_1.mat`` with the
  real inconsistencies (people without ``annopoints``, points without ``is_visible``, ``is_visible``
  stored as a char, empty ``act``, test images with only ``objpos``/``scale``).
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# --- MATLAB v5 (scipy) -----------------------------------------------------------------------------


def _to_savemat(value: Any) -> Any:
    if value is None:
        return np.zeros((0, 0))
    if isinstance(value, dict):
        return {k: _to_savemat(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            fields = list(dict.fromkeys(itertools.chain.from_iterable(v.keys() for v in value)))
            arr = np.empty((1, len(value)), dtype=[(f, object) for f in fields])
            for i, v in enumerate(value):
                for f in fields:
                    # A field another element has but this one lacks is [] (MATLAB struct arrays share fields).
                    arr[0, i][f] = _to_savemat(v.get(f))
            return arr
        cell = np.empty((1, len(value)), dtype=object)
        for i, v in enumerate(value):
            cell[0, i] = _to_savemat(v)
        return cell
    return value


def write_mat5(path: Path, variables: dict[str, Any]) -> Path:
    """Write ``variables`` as a MATLAB v5 ``.mat`` (struct arrays as real 1×N struct arrays)."""
    import scipy.io

    scipy.io.savemat(str(path), {k: _to_savemat(v) for k, v in variables.items()}, oned_as="row")
    return path


# --- MATLAB v7.3 (HDF5) ----------------------------------------------------------------------------

_counter = itertools.count()


def _cls(node: Any, name: str) -> None:
    node.attrs["MATLAB_class"] = np.bytes_(name)


def _write_h5(fh: Any, parent: Any, name: str, value: Any) -> Any:
    import h5py

    if value is None:
        ds = parent.create_dataset(name, data=np.zeros(2, dtype=np.uint64))
        _cls(ds, "double")
        ds.attrs["MATLAB_empty"] = np.uint8(1)
        return ds
    if isinstance(value, dict):
        grp = parent.create_group(name)
        _cls(grp, "struct")
        for k, v in value.items():
            _write_h5(fh, grp, k, v)
        return grp
    if isinstance(value, list):
        refs_grp = fh.require_group("#refs#")
        if value and all(isinstance(v, dict) for v in value):
            grp = parent.create_group(name)
            _cls(grp, "struct")
            fields = list(dict.fromkeys(itertools.chain.from_iterable(v.keys() for v in value)))
            for f in fields:
                refs = []
                for v in value:
                    obj = _write_h5(fh, refs_grp, f"r{next(_counter)}", v.get(f))
                    refs.append(obj.ref)
                grp.create_dataset(f, data=np.array(refs, dtype=h5py.ref_dtype).reshape(len(value), 1))
            return grp
        refs = [_write_h5(fh, refs_grp, f"r{next(_counter)}", v).ref for v in value]
        ds = parent.create_dataset(name, data=np.array(refs, dtype=h5py.ref_dtype).reshape(len(value), 1))
        _cls(ds, "cell")
        return ds
    if isinstance(value, str):
        ds = parent.create_dataset(name, data=np.array([ord(c) for c in value], dtype=np.uint16).reshape(-1, 1))
        _cls(ds, "char")
        return ds
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:
        arr = arr.reshape(1, -1)
    ds = parent.create_dataset(name, data=arr.T)  # MATLAB is column-major: h5 shape is reversed
    _cls(ds, "double")
    return ds


def write_mat73(path: Path, variables: dict[str, Any]) -> Path:
    """Write ``variables`` as a MATLAB v7.3 file (HDF5 with the MATLAB 512-byte header)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as fh:
        for k, v in variables.items():
            _write_h5(fh, fh, k, v)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path


# --- the RELEASE struct ----------------------------------------------------------------------------


def _point(jid: int, x: float, y: float, vis: Any) -> dict[str, Any]:
    return {"x": float(x), "y": float(y), "id": float(jid), "is_visible": vis}


def _person(rng: np.random.Generator, n_points: int = 16, with_points: bool = True, vis: Any = 1.0) -> dict[str, Any]:
    cx, cy = rng.uniform(200, 1000), rng.uniform(150, 500)
    rect: dict[str, Any] = {
        "x1": float(cx - 20), "y1": float(cy - 160), "x2": float(cx + 20), "y2": float(cy - 110),
        "scale": float(rng.uniform(1.5, 4.0)), "objpos": {"x": float(round(cx)), "y": float(round(cy))},
    }  # fmt: skip
    if with_points:
        rect["annopoints"] = {
            "point": [_point(j, cx + rng.uniform(-80, 80), cy + rng.uniform(-150, 150), vis) for j in range(n_points)]
        }
    return rect


def small_release(seed: int = 0) -> dict[str, Any]:
    """A 5-image RELEASE with every known inconsistency, and its expected outcome documented inline.

    Image 1 (train): person 1 fully annotated (joint 3 has ``is_visible`` [] , joint 4 has char
    ``'0'``), person 2 without ``annopoints``. Image 2 (train, Tompson-validation image): person 1
    annotated (not a validation person), person 2 the validation person. Image 3 (test): person 1 in
    ``single_person``, person 2 not; ``act`` empty (``act_id`` -1). Image 4 (train): no annorect.
    Image 5 (train): one annotated person without ``objpos``/``scale`` (box from joints).
    """
    rng = np.random.default_rng(seed)
    p1 = _person(rng)
    p1["annopoints"]["point"][3]["is_visible"] = None
    p1["annopoints"]["point"][4]["is_visible"] = "0"
    p1["annopoints"]["point"][5]["is_visible"] = 0.0
    p1["annopoints"]["point"] = p1["annopoints"]["point"][:14]  # joints 14, 15 absent
    no_box = _person(rng)
    del no_box["objpos"], no_box["scale"]
    test_person = {k: v for k, v in _person(rng, with_points=False).items() if k in ("scale", "objpos")}
    annolist = [
        {"image": {"name": "000000011.jpg"}, "annorect": [p1, _person(rng, with_points=False)], "frame_sec": 12.0,
         "vididx": 1.0},
        {"image": {"name": "000000022.jpg"}, "annorect": [_person(rng), _person(rng)], "frame_sec": 3.0, "vididx": 2.0},
        {"image": {"name": "000000033.jpg"}, "annorect": [test_person, dict(test_person)], "frame_sec": None,
         "vididx": None},
        {"image": {"name": "000000044.jpg"}, "annorect": None, "frame_sec": None, "vididx": None},
        {"image": {"name": "000000055.jpg"}, "annorect": [no_box], "frame_sec": None, "vididx": None},
    ]  # fmt: skip
    act = [
        {"cat_name": "sports", "act_name": "running", "act_id": 5.0},
        {"cat_name": "home activities", "act_name": "vacuuming", "act_id": 17.0},
        {"cat_name": None, "act_name": None, "act_id": -1.0},
        {"cat_name": None, "act_name": None, "act_id": -1.0},
        {"cat_name": "sports", "act_name": "running", "act_id": 5.0},
    ]
    return {
        "annolist": annolist,
        "img_train": np.array([[1.0, 1.0, 0.0, 1.0, 1.0]]),
        "version": "12",
        "single_person": [np.array([1.0]), np.array([2.0]), np.array([1.0]), None, np.array([1.0])],
        "act": act,
        "video_list": ["aaaaaaaaaaa", "bbbbbbbbbbb"],
    }


def write_valid_persons(path: Path, img_index_1based: list[int], person_index_1based: list[int]) -> Path:
    """Write a Tompson-style ``detections.mat`` holding only the validation (image, person) pairs."""
    write_mat5(
        path,
        {
            "RELEASE_img_index": np.array(img_index_1based, np.uint16).reshape(1, -1),
            "RELEASE_person_index": np.array(person_index_1based, np.uint8).reshape(1, -1),
        },
    )
    return path


def hg_scale_release(lists_dir: Path, img_index: np.ndarray, person_index: np.ndarray, total: int = 24987) -> dict:
    """A full-size RELEASE laid out so that the single-person split must give the hourglass lists.

    Validation images sit at Tompson's real ``RELEASE_img_index`` slots with the validation person at
    its real ``RELEASE_person_index`` plus one extra annotated person (excluded by the protocol); the
    training images of ``train_images.txt`` fill the other slots in list order with exactly as many
    annotated persons as the list has lines (plus an un-annotated one every 7th image); the test images
    get their single-person persons plus one person outside ``single_person``; remaining slots are
    training images without people. Persons carry 2 points to keep the file small.
    """
    rng = np.random.default_rng(1)
    valid_names = (lists_dir / "valid_images.txt").read_text().split()
    train_lines = (lists_dir / "train_images.txt").read_text().split()
    test_lines = (lists_dir / "test_images.txt").read_text().split()
    slots: dict[int, dict[str, Any]] = {}
    for name, i, p in zip(valid_names, img_index.tolist(), person_index.tolist(), strict=True):
        slot = slots.setdefault(i, {"name": name, "valid": set()})
        slot["valid"].add(p)
    train_counts = Counter(train_lines)
    test_counts = Counter(test_lines)
    train_names = list(dict.fromkeys(train_lines))
    test_names = list(dict.fromkeys(test_lines))
    annolist, img_train, single = [], [], []
    ti = si = 0
    small = {"scale": 2.0, "objpos": {"x": 100.0, "y": 100.0}}
    pts = {"point": [_point(8, 100.0, 60.0, 1.0), _point(9, 101.0, 20.0, 1.0)]}
    for idx in range(1, total + 1):
        if idx in slots:
            slot = slots[idx]
            n = max(slot["valid"]) + 1
            annolist.append({"image": {"name": slot["name"]}, "annorect": [{**small, "annopoints": pts}] * n})
            img_train.append(1.0)
            single.append(np.array(sorted(slot["valid"]), dtype=np.float64))
            continue
        remaining_slots = total - idx + 1 - sum(1 for s in slots if s >= idx)
        take_train = ti < len(train_names) and (
            si >= len(test_names) or rng.random() < (len(train_names) - ti) / max(remaining_slots, 1) * 1.0
        )
        take_test = not take_train and si < len(test_names) and rng.random() < 0.9
        if take_train:
            name = train_names[ti]
            ti += 1
            rects = [{**small, "annopoints": pts} for _ in range(train_counts[name])]
            if ti % 7 == 0:
                rects.append(dict(small))  # a person without annopoints (rejected as no_annotation)
            annolist.append({"image": {"name": name}, "annorect": rects})
            img_train.append(1.0)
            single.append(np.arange(1, len(rects) + 1, dtype=np.float64))
        elif take_test:
            name = test_names[si]
            si += 1
            k = test_counts[name]
            annolist.append({"image": {"name": name}, "annorect": [dict(small) for _ in range(k + 1)]})
            img_train.append(0.0)
            single.append(np.arange(1, k + 1, dtype=np.float64))  # the last person is not single
        else:
            annolist.append({"image": {"name": f"{900000000 + idx:09d}.jpg"}, "annorect": None})
            img_train.append(1.0)
            single.append(None)
    if ti != len(train_names) or si != len(test_names):
        raise RuntimeError(f"layout ran out of slots: {ti}/{len(train_names)} train, {si}/{len(test_names)} test")
    return {"annolist": annolist, "img_train": np.array([img_train]), "single_person": single}
