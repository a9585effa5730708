"""A Spark standalone cluster on this machine: one master and N workers, each its own JVM process.

Uses the launcher that ships inside the pyspark package (``bin/spark-class``), so nothing else
needs installing. Everything listens on 127.0.0.1 only.

    python scripts/spark_cluster.py start --workers 2 --cores 1   # prints the master URL, writes build/spark-cluster.json
    python scripts/spark_cluster.py stop                          # stops the processes it started

In Python (the tests do this)::

    with LocalCluster(workers=2, cores=1) as cluster:
        spark = gds.session(master=cluster.url)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATE = Path(__file__).resolve().parents[1] / "build" / "spark-cluster.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


def _wait_port(port: int, proc, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on 127.0.0.1:{port}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


class LocalCluster:
    """A standalone master and ``workers`` workers (``cores`` cores, ``memory`` each) as child processes."""

    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "1g", log_dir=None):
        self.n_workers, self.cores, self.memory = int(workers), int(cores), memory
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="geodetect-spark-cluster-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.master = None
        self.workers: list[subprocess.Popen] = []
        self.url = None

    def _launch(self, name: str, args: list[str]) -> subprocess.Popen:
        home = _spark_home()
        env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
               "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
               "SPARK_LOG_DIR": str(self.log_dir), "SPARK_WORKER_DIR": str(self.log_dir / "work")}
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([os.path.join(home, "bin", "spark-class"), *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return proc

    def start(self) -> LocalCluster:
        port, ui = _free_port(), _free_port()
        self.master = self._launch("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                              "--port", str(port), "--webui-port", str(ui)])
        _wait_port(port, self.master, "the Spark master")
        self.url = f"spark://127.0.0.1:{port}"
        ports = []
        for i in range(self.n_workers):  # all workers start at once; then each must listen
            wport = _free_port()
            w = self._launch(f"worker-{i}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                             "--port", str(wport), "--webui-port", str(_free_port()),
                                             "--cores", str(self.cores), "--memory", self.memory,
                                             "--work-dir", str(self.log_dir / f"work-{i}"), self.url])
            self.workers.append(w)
            ports.append(wport)
        for i, (w, wport) in enumerate(zip(self.workers, ports)):
            _wait_port(wport, w, f"Spark worker {i}")
        self._wait_registered()
        return self

    def _wait_registered(self, timeout: float = 120.0) -> None:
        """Until the master's log says every worker registered."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = (self.log_dir / "master.log").read_text(errors="replace")
            if text.count("Registering worker") >= self.n_workers:
                return
            time.sleep(0.3)
        raise RuntimeError(f"workers did not register with {self.url} within {timeout:.0f} s; see {self.log_dir}")

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` and the executor JVMs it started (a machine lost mid-job)."""
        w = self.workers[i]
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait(30)

    def pids(self) -> list[int]:
        return [p.pid for p in [self.master, *self.workers] if p is not None]

    def stop(self) -> None:
        """Stop every process started here (each in its own process group: workers take their executors along)."""
        for p in [*self.workers, self.master]:
            if p is None or p.poll() is not None:
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for p in [*self.workers, self.master]:
            if p is None:
                continue
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start")
    st.add_argument("--workers", type=int, default=2)
    st.add_argument("--cores", type=int, default=1)
    st.add_argument("--memory", default="1g")
    sub.add_parser("stop")
    a = ap.parse_args(argv)
    if a.cmd == "start":
        c = LocalCluster(a.workers, a.cores, a.memory).start()
        STATE.parent.mkdir(parents=True, exist_ok=True)
        STATE.write_text(json.dumps({"url": c.url, "pgids": c.pids(), "logs": str(c.log_dir)}))
        print(c.url)
        return 0
    if not STATE.exists():
        print("no cluster started by this script", file=sys.stderr)
        return 1
    state = json.loads(STATE.read_text())
    for pgid in state["pgids"]:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    STATE.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
