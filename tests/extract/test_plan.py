"""Planning an extraction run over a clip dataset (pure: no Prefect, no Dask)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from schemas.errors import ConfigError
from tasks.datasets.mhad import MHADParams, sequence_dir
from tasks.extract.plan import BackendSpec, plan_dataset
from tasks.extract.worker import extract_shard
from tasks.video.sampling import SamplingSpec
from tests.extract.doubles import BLOB
from tests.video.fakes import write_frame_folder


def test_mhad_subject_split_test_side_extracts_frame_folders(tmp_path: Path) -> None:
    p = MHADParams()
    write_frame_folder(tmp_path / "src" / sequence_dir(p, 1, 1, 1), "img_l01_c01_s01_a01_r01_{:05d}.pgm", 3)  # train subject
    write_frame_folder(tmp_path / "src" / sequence_dir(p, 8, 11, 2), "img_l01_c01_s08_a11_r02_{:05d}.pgm", 4)  # test subject
    plan = plan_dataset("mhad", tmp_path / "src", str(tmp_path / "root"), BackendSpec.create(BLOB), SamplingSpec(), fold="subject", part="test", shard_size=50)
    assert plan.clips == 1 and plan.rejected_at_parse == 658 and len(plan.shards) == 1
    assert plan.run_dir.startswith(f"{tmp_path}/root/keypoints/mhad/") and plan.request["fold"] == "subject"
    summary = extract_shard(plan.shards[0])
    assert summary.to_dict()["extracted"] == 1
    clips = pq.read_table(f"{plan.run_dir}/clips-00000.parquet").to_pylist()
    assert [c["clip_id"] for c in clips] == ["camera_cluster01_cam01_s08_a11_r02"] and clips[0]["frames_decoded"] == 4
    assert pq.read_table(f"{plan.run_dir}/part-00000.parquet").num_rows == 4  # one square per frame


def test_plan_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    spec, sampling = BackendSpec.create(BLOB), SamplingSpec()
    with pytest.raises(ConfigError, match="needs a --fold"):
        plan_dataset("mhad", tmp_path, str(tmp_path), spec, sampling, part="train")
    with pytest.raises(ConfigError, match="train, test or all"):
        plan_dataset("mhad", tmp_path, str(tmp_path), spec, sampling, fold="subject", part="val")
    with pytest.raises(ConfigError, match="image dataset"):
        plan_dataset("flic", tmp_path, str(tmp_path), spec, sampling)


def test_fold_names_and_facts_come_from_the_adapter(shared_data: Path, tmp_path: Path) -> None:
    spec, sampling = BackendSpec.create(BLOB), SamplingSpec()
    # UCF101 (real split lists, videos not required): the adapter adds ``split: N`` to the request
    plan = plan_dataset("ucf101", shared_data / "ucf101", str(tmp_path), spec, sampling, fold="split2", part="test",
                        adapter_params={"require_videos": "false"})  # fmt: skip
    assert plan.clips == 3734 and plan.request["fold"] == "split2" and plan.request["split"] == 2
    # MHAD adds nothing; its messages name its own folds, never another dataset's
    p = MHADParams()
    write_frame_folder(tmp_path / "src" / sequence_dir(p, 8, 1, 1), "img_l01_c01_s08_a01_r01_{:05d}.pgm", 2)
    mhad = plan_dataset("mhad", tmp_path / "src", str(tmp_path), spec, sampling, fold="subject", part="test", shard_size=50)
    assert "split" not in mhad.request
    with pytest.raises(ConfigError, match="needs a --fold") as info:
        plan_dataset("mhad", tmp_path / "src", str(tmp_path), spec, sampling, part="test")
    assert info.value.hint.startswith("mhad folds: subject")
    with pytest.raises(ConfigError, match="no clip has fold 'logo03'") as info:
        plan_dataset("mhad", tmp_path / "src", str(tmp_path), spec, sampling, fold="logo03")
    assert info.value.hint.startswith("mhad folds: subject") and "ucf" not in info.value.hint
