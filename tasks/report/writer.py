"""Collect, render and write the cards atomically (temporary name, then rename); returns the path.

Default places: ``{version folder}/_report/index.html`` (``_`` keeps it out of the records a
reader globs) and ``{model folder}/report/index.html``.
"""

from __future__ import annotations

from storage.fs import filesystem, join, write_bytes_atomic
from storage.layout import VersionPaths
from tasks.report.collect import dataset_card_data, model_card_data
from tasks.report.html import dataset_card, model_card

__all__ = ["dataset_report_path", "model_report_path", "write_dataset_report", "write_html", "write_model_report"]

REPORT_FILE = "index.html"


def write_html(out: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``out`` (path or fsspec URL) atomically, creating its folder; returns ``out``."""
    fs, path = filesystem(out)
    write_bytes_atomic(fs, path, text.encode("utf-8"))  # atomic_open creates the folder
    return out


def dataset_report_path(root: str, dataset: str, version: str) -> str:
    """``{root}/datasets/{dataset}/{version}/_report/index.html``."""
    return join(VersionPaths(root, dataset, version).dir, "_report", REPORT_FILE)


def model_report_path(model_dir: str) -> str:
    """``{model folder}/report/index.html``."""
    return join(model_dir, "report", REPORT_FILE)


def write_dataset_report(root: str, ref: str, out: str | None = None) -> str:
    """Render the card of ``DATASET[@VERSION]`` under ``root`` and write it (default: inside the version).

    Returns:
        The path (or URL) written.
    """
    data = dataset_card_data(root, ref)
    target = out or dataset_report_path(root, data["dataset"], data["version"])
    return write_html(target, dataset_card(data))


def write_model_report(root: str, ref: str, out: str | None = None) -> str:
    """Render the card of ``TASK[@VERSION]`` under ``root`` and write it (default: ``{model folder}/report/``).

    Returns:
        The path (or URL) written.
    """
    from tasks.training import registry

    record = registry.resolve(root, ref)
    data = model_card_data(root, record.ref)
    target = out or model_report_path(record.dir)
    return write_html(target, model_card(data))
