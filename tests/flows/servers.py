"""Real servers for the flow tests: ``prefect server start`` (SQLite or PostgreSQL), a process worker,
a throwaway PostgreSQL cluster, and polling of the Prefect REST API.

Every process starts in its own session (process group) so :func:`stop` ends it with its children;
the fixtures that start them stop them in ``finally`` blocks, on failure too.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT
from tests.ports import free_port

BIN = Path(sys.executable).parent
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def prefect_env(tmp_path: Path, api: str, **extra: str) -> dict[str, str]:
    """The environment of every Prefect process of a test: its own home, the server's API, no telemetry."""
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect_home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_CLI_PROMPT="false",
        COLUMNS="250",  # rich tables of the prefect CLI: full names
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_WORKER_QUERY_SECONDS="1",
        POSEPIPE_HOME=str(REPO_ROOT),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.update(extra)
    for key in ("POSEPIPE_DASK_ADDRESS", "POSEPIPE_ROOT"):
        env.pop(key, None)
    return env


def wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    """Poll ``{url}/health`` until it answers 200 (or the server exits)."""

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(f"{url} healthy", healthy, timeout_s, 0.3, (server,))


def stop(proc: subprocess.Popen | None, first: signal.Signals = signal.SIGTERM) -> None:
    """``first`` (SIGTERM) to the process group, SIGKILL what is left after 20 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, first)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def api_post(api: str, path: str, body: dict[str, Any]) -> Any:
    """POST JSON to the Prefect REST API, the decoded answer."""
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def api_get(api: str, path: str) -> Any:
    """GET from the Prefect REST API, the decoded answer."""
    with urllib.request.urlopen(f"{api}{path}", timeout=10) as response:
        return json.loads(response.read())


def wait_for_run(api: str, deployment_name: str, timeout_s: float) -> dict:
    """The first flow run of ``deployment_name`` once it reaches a final state (polling the REST API)."""
    runs: list = []

    def finished() -> dict | None:
        deployments = api_post(api, "/deployments/filter", {"deployments": {"name": {"any_": [deployment_name]}}})
        if not deployments:
            return None
        runs[:] = api_post(api, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployments[0]["id"]]}}})
        return next((r for r in runs if r["state_type"] in FINAL_STATES), None)

    try:
        return wait_until(f"a finished run of {deployment_name}", finished, timeout_s, 2.0)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc} (runs: {[(r['name'], r['state_type']) for r in runs]})") from None


def wait_until(what: str, check: Callable[[], Any], timeout_s: float, interval_s: float = 0.5, alive: tuple[subprocess.Popen, ...] = ()) -> Any:
    """Poll ``check()`` until it returns something truthy (returned); fail if a process in ``alive`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in alive:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} while waiting for {what}")
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"{what}: not after {timeout_s} s")


def flow_run(api: str, run_id: str) -> dict:
    """One flow run as the API returns it (``state_type``, ``parameters``, ``infrastructure_pid``...)."""
    return api_get(api, f"/flow_runs/{run_id}")


@dataclass
class PrefectStack:
    """A running ``prefect server start`` on 127.0.0.1 and the CLI environment pointed at it."""

    api: str
    env: dict[str, str]
    tmp_path: Path
    server: subprocess.Popen
    workers: list[subprocess.Popen]

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run ``prefect ARGS`` against the server (from the repository root); its output, rc 0 asserted."""
        res = subprocess.run([str(BIN / "prefect"), *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        out = res.stdout + res.stderr
        assert res.returncode == 0, f"prefect {' '.join(args)} -> rc {res.returncode}\n{out[-4000:]}"
        return out

    def start_worker(self, pool: str = "posepipe", log_name: str = "worker.log") -> subprocess.Popen:
        """``prefect worker start --pool POOL --type process`` in its own process group, logging to ``log_name``."""
        with open(self.tmp_path / log_name, "a") as log:
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
                cwd=self.tmp_path, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.workers.append(worker)
        return worker

    def deploy_all(self, pool: str = "posepipe") -> str:
        """Create the process work pool and ``prefect deploy --all`` from the real prefect.yaml; the deploy output."""
        self.cli("work-pool", "create", pool, "--type", "process")
        return self.cli("--no-prompt", "deploy", "--all")

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        """Create a flow run of deployment ``FLOW/NAME`` with ``parameters`` (no waiting); its id."""
        (deployment,) = api_post(self.api, "/deployments/filter", {"deployments": {"name": {"any_": [name.split("/")[-1]]}}})
        run = api_post(self.api, f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters})
        return str(run["id"])

    def wait_final(self, run_id: str, timeout_s: float) -> dict:
        """The flow run once it reaches a final state."""
        alive = (self.server,)
        return wait_until(f"flow run {run_id} final", lambda: (r := flow_run(self.api, run_id))["state_type"] in FINAL_STATES and r, timeout_s, 1.0, alive)

    def artifact(self, key: str) -> list[dict]:
        """Every artifact with ``key`` (newest first)."""
        return api_post(self.api, "/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC"})


@contextlib.contextmanager
def prefect_server(tmp_path: Path, **env: str) -> Iterator[PrefectStack]:
    """``prefect server start`` on a free port of 127.0.0.1 (database from ``env``, default SQLite in its home);
    every worker started through the stack and the server are stopped on exit, failure included."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    full_env = prefect_env(tmp_path, api, **env)
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    stack = PrefectStack(api, full_env, tmp_path, server, [])
    try:
        wait_healthy(api, server, timeout_s=180)
        yield stack
    finally:
        for worker in stack.workers:
            stop(worker)
        stop(server)
        log.close()


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin() -> Path:
    """Debian's PostgreSQL server binaries (``/usr/lib/postgresql/N/bin``, newest N)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql/*/bin (make test-deps installs Debian's postgresql)")
    return found[-1].parent


@dataclass
class Postgres:
    """A running throwaway cluster: its port on 127.0.0.1 and superuser (trust authentication)."""

    port: int
    user: str
    bin: Path

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def createdb(self, name: str) -> None:
        res = subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """``initdb`` into a fresh folder and ``postgres`` on a free port of 127.0.0.1; stopped and removed on exit.

    PostgreSQL refuses to run as root: as root (CI, these VMs) the cluster belongs to the ``postgres``
    user that Debian's package creates, and both commands run through ``runuser``; as anyone else,
    as that user. The folder is a fresh ``mkdtemp`` under the system temp dir (pytest's tmp folders
    are private to root), and the Unix socket lives in it too.
    """
    pg_bin = postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="posepipe-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root needs the 'postgres' user (Debian's postgresql package creates it)") from None
        os.chown(base, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    user = "posepipe"
    init = subprocess.run([*prefix, str(pg_bin / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    server: subprocess.Popen | None = None
    log = open(base.parent / f"{base.name}.log", "w")  # noqa: SIM115 (closed in finally)
    try:
        assert init.returncode == 0, init.stdout + init.stderr
        port = free_port()
        server = subprocess.Popen(
            [*prefix, str(pg_bin / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base), "-h", "127.0.0.1",
             "-c", "fsync=off", "-c", "max_connections=100"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

        def ready() -> bool:
            return subprocess.run([str(pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode == 0

        wait_until("postgres accepting connections", ready, 60, 0.3, (server,))
        yield Postgres(port, user, pg_bin)
    finally:
        stop(server, signal.SIGINT)  # PostgreSQL's fast shutdown
        log.close()
        shutil.rmtree(base, ignore_errors=True)
        Path(log.name).unlink(missing_ok=True)
