"""The end of a rebuild, train or retrain flow: render the card and link it as a Prefect artifact.

A card that cannot be rendered never fails the flow: the run's data is committed already, so the
failure is logged as a warning (with the reason) and no link is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["link_report"]


def _link(path: str) -> str:
    """A link a browser opens: ``file://`` for a local path, the URL itself otherwise."""
    return path if "://" in path else Path(path).resolve().as_uri()


def link_report(kind: Literal["dataset", "model"], root: str, ref: str, key: str, description: str) -> str | None:
    """Write the dataset or model card of ``ref`` under ``root`` and publish a link artifact to it.

    Args:
        kind: ``dataset`` (``ref`` = ``DATASET@VERSION``) or ``model`` (``ref`` = ``TASK@VERSION``).
        root: Storage root.
        ref: What the card is about.
        key: Prefect artifact key (other characters than letters and digits become dashes).
        description: The artifact's description.

    Returns:
        The card's path, or None when it could not be rendered (a warning says why).
    """
    from prefect.artifacts import create_link_artifact
    from prefect.logging import get_run_logger

    from tasks.report import write_dataset_report, write_model_report

    try:
        path = (write_dataset_report if kind == "dataset" else write_model_report)(root, ref)
    except Exception as exc:  # noqa: BLE001 - a card is a view of committed data: never fail the run for it
        get_run_logger().warning("could not render the %s card of %s: %s: %s", kind, ref, type(exc).__name__, exc)
        return None
    safe_key = "".join(c if c.isalnum() else "-" for c in key.lower())
    create_link_artifact(_link(path), link_text=f"{kind} card: {ref}", key=safe_key, description=description)
    print(f"{kind} card: {path}")
    return path
