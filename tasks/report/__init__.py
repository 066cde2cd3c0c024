"""Static HTML cards a person reads: a dataset version's card and a registered model's card.

* :mod:`tasks.report.html`: pure builders, plain data in, one self-contained HTML string out
  (images as ``data:`` URIs, inline CSS, no JavaScript, every string escaped).
* :mod:`tasks.report.collect`: reads a version or a model folder into that plain data.
* :mod:`tasks.report.writer`: collect + build + write atomically (default: inside the version or
  model folder), returning the path.
"""

from tasks.report.writer import dataset_report_path, model_report_path, write_dataset_report, write_model_report

__all__ = ["dataset_report_path", "model_report_path", "write_dataset_report", "write_model_report"]
