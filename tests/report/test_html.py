"""The card builders on tiny inline inputs: escaping, headings, counts, decisions, charts."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from tasks.report.collect import _reject_thumbnail, sample_rows
from tasks.report.html import bar_chart, dataset_card, esc, model_card, table
from tests.report.headings import MODEL_HEADINGS

EVIL = '<script>alert("x")</script>&'


def _dataset(**kw):
    data = {
        "dataset": "coco",
        "version": "v-1",
        "record": "processed_samples",
        "about": {"homepage": "https://cocodataset.org", "licence": "CC BY 4.0", "citation": EVIL},
        "counts": {"train": 7, "val": 3},
        "totals": {"parsed": 12, "written": 10, "rejected": 2},
        "rejects": [{"reason": "no_keypoints", "count": 2, "examples": [{"source_key": "ann:5", "stage": "parse", "detail": EVIL}]}],
        "validation": {"success": False, "failures": ["train/part-00000: visibility_in_domain"], "checks": [
            {"scope": "every shard", "check": "visibility_in_domain", "success": False, "unexpected": 4, "detail": "values 3"},
            {"scope": "version", "check": "splits_disjoint", "success": True, "unexpected": 0, "detail": ""},
        ]},
        "samples": [{"uri": "data:image/png;base64,AAAA", "caption": "train · coco-1"}],
    }  # fmt: skip
    data.update(kw)
    return data


def headings(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


def test_esc_and_table_escape_every_cell() -> None:
    assert esc(EVIL) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
    assert esc(None) == "-"
    html = table(["a<b", "n"], [[EVIL, 0.123456], [None, float("nan")]], numeric=[1])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert (
        "<th>a&lt;b</th>" in html and '<td class="num">0.1235</td>' in html and "<td>-</td>" in html and ">NaN<" in html
    )


def test_dataset_card_headings_counts_rejects_and_failed_checks() -> None:
    page = dataset_card(_dataset(dataset=EVIL))
    assert "<script>" not in page and page.startswith("<!DOCTYPE html>")
    assert headings(page) == ["Source", "Counts per split", "Rejects by reason", "Samples with skeletons", "Validation"]
    assert '<td>train</td><td class="num">7</td>' in page and '<td>total</td><td class="num">10</td>' in page
    assert '<td>no_keypoints</td><td class="num">2</td>' in page and "ann:5" in page
    assert "CC BY 4.0" in page and "FAILED" in page and "train/part-00000: visibility_in_domain" in page
    # the failed check is shown in the open; passed ones are folded
    failed_at, folded_at = page.index("values 3"), page.index("1 checks passed")
    assert failed_at < folded_at and page.index("splits_disjoint") > folded_at
    assert 'src="data:image/png;base64,AAAA"' in page and "<script" not in page.lower().replace("&lt;script", "")


def test_sequence_card_names_the_composite_images_and_no_rejects_is_said() -> None:
    page = dataset_card(_dataset(record="sequences", rejects=[], samples=[], samples_note="composites"))
    assert "Sample skeleton images" in headings(page) and "no rejects" in page and "composites" in page


def test_model_card_lineage_metrics_curves_and_refused_decision() -> None:
    decision = {
        "status": "refused", "promote": False, "candidate": "m-2", "champion": "m-1", "decided_at": "2026-01-01T00:00:00Z",
        "reasons": ["macro_f1 fell by 0.05 (allowed -0.01)"],
        "checks": [{"metric": "macro_f1", "kind": "change", "value": 0.7, "baseline": 0.75, "improvement": -0.05,
                    "required": -0.01, "interval": {"low": -0.09, "high": "nan"}, "passed": False}],
    }  # fmt: skip
    data = {
        "task": "pose-mlp", "model_version": "m-2", "lineage": {"dataset": "mpii@v-1", "seed": 0},
        "metrics": {"macro_f1": 0.7, "per_class/a<b/f1": 0.5}, "history": [{"epoch": 1, "loss": 1.5}, {"epoch": 2, "loss": 1.2}],
        "plots": {"history": "data:image/png;base64,BBBB"}, "per_item": {"title": "F1 per class", "values": {"a<b": 0.5, "c": None}},
        "decision": decision, "champion": "m-1",
    }  # fmt: skip
    page = model_card(data)
    assert headings(page) == MODEL_HEADINGS
    assert "mpii@v-1" in page and "per_class/a&lt;b/f1" in page and '<td class="num">1.2</td>' in page
    assert (
        'class="bad">refused' in page and "macro_f1 fell by 0.05" in page and "-0.05" in page and "[-0.09, NaN]" in page
    )
    assert "no contact sheet recorded" in page
    first = model_card({**data, "decision": None, "champion": None})
    assert "no retrain decision recorded" in first and "current champion: none" in first


def test_bar_chart_clamps_and_marks_missing_values() -> None:
    html = bar_chart({"knee": 0.5, "hip": 1.7, "ankle": None, "x": float("nan")})
    widths = re.findall(r"width:([0-9.]+)%", html)
    assert widths == ["50.0", "100.0", "0.0", "0.0"] and html.count(">n/a<") == 2


def test_sample_rows_spread_over_the_split() -> None:
    assert sample_rows(3, 12).tolist() == [0, 1, 2]
    rows = sample_rows(100, 5)
    assert rows.tolist() == [0, 25, 50, 74, 99]


def test_reject_thumbnail_from_a_source_image_named_in_the_detail(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((40, 80, 3), 200, np.uint8))
    uri, width = _reject_thumbnail(str(tmp_path), "coco:ann:1", "image images/a.jpg: no keypoints")
    assert uri.startswith("data:image/png;base64,") and width == 160
    assert _reject_thumbnail(str(tmp_path), "k", "images/missing.jpg") is None
    assert _reject_thumbnail(str(tmp_path), "k", "../../etc/x.png") is None
    assert _reject_thumbnail(None, "k", "images/a.jpg") is None
    # MPII's key names the bare file; the version's inputs list says where it lies in the source
    uri, _ = _reject_thumbnail(
        str(tmp_path), "a.jpg:0", "training image person without annopoints", {"a.jpg": "images/a.jpg"}
    )
    assert uri.startswith("data:image/png;base64,")
    assert _reject_thumbnail(str(tmp_path), "a.jpg:0", "no annopoints") is None
