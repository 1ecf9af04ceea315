"""JupyterLab for the browser tests: served on 127.0.0.1 only, offline, with a token.

Not a test module: tests/browser/test_jupyterlab.py and benchmarks/explorer_latency.py
use it.

:func:`serve` copies the chapters into a temporary folder (the checkout's notebooks are
never written), starts the pinned JupyterLab there with its own config, settings and
workspace folders, and yields a :class:`Lab`. Everything that would call out is off: the
news feed and the update check, the extension manager (read-only, its front end
disabled) and the language server (server extension and front end). The kernels import
this checkout (``PYTHONPATH``) and run without ``CAM_BOOK_STATIC``, so chapter 2 shows
the live explorer. :func:`drive` runs jupyterlab.js (headless Chromium) against it and
returns its JSON report.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent
DISABLED_PLUGINS = (
    "@jupyterlab/extensionmanager-extension",
    "@jupyterlab/apputils-extension:announcements",
    "@jupyterlab/lsp-extension",  # and the two plugins that need it:
    "@jupyterlab/fileeditor-extension:language-server",
    "@jupyterlab/notebook-extension:language-server",
)
SERVER_CONFIG = {
    "ServerApp": {
        "ip": "127.0.0.1",
        "open_browser": False,
        "jpserver_extensions": {"jupyter_lsp": False},
        "allow_remote_access": False,
    },
    "LabApp": {
        "news_url": None,
        "check_for_updates_class": (
            "jupyterlab.handlers.announcements.NeverCheckForUpdate"
        ),
        "extension_manager": "readonly",
        # window.jupyterapp: the driver reads the notebook model
        "expose_app_in_browser": True,
    },
}


@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT/
    token: str
    root: Path  # the served folder: notebooks/ holds copies of the chapters
    log: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(notebooks: Sequence[Path], startup_timeout: float = 120.0) -> Iterator[Lab]:
    with tempfile.TemporaryDirectory(prefix="cam-jupyterlab-") as tmp:
        tmp_path = Path(tmp)
        root, config = tmp_path / "root", tmp_path / "config"
        (root / "notebooks").mkdir(parents=True)
        for notebook in notebooks:
            shutil.copy2(notebook, root / "notebooks" / notebook.name)
        (config / "labconfig").mkdir(parents=True)
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps(
                {"disabledExtensions": {name: True for name in DISABLED_PLUGINS}}
            )
        )
        (config / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG))
        token, port = secrets.token_hex(16), free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("CAM_BOOK_STATIC", "JUPYTER_TOKEN")
        }
        env.update(
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
            IPYTHONDIR=str(tmp_path / "ipython"),
            MPLCONFIGDIR=str(tmp_path / "matplotlib"),
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(ROOT), env.get("PYTHONPATH")])
            ),
        )
        log = tmp_path / "jupyterlab.log"
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            f"--port={port}",
            "--port-retries=0",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
            "--ServerApp.ip=127.0.0.1",
            "--no-browser",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers often run as root
            command.append("--allow-root")
        with open(log, "w") as out:
            server = subprocess.Popen(
                command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT
            )
            try:
                url = f"http://127.0.0.1:{port}/"
                wait_until_up(url, token, server, log, startup_timeout)
                yield Lab(url=url, token=token, root=root, log=log)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()


def wait_until_up(
    url: str, token: str, server: subprocess.Popen, log: Path, timeout: float
) -> None:
    """Poll the server's status API until it answers (or the server dies, or time is
    up)."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        url + "api/status", headers={"Authorization": f"token {token}"}
    )
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with {server.returncode}:\n"
                + log.read_text()[-3000:]
            )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        server_wait(server, 0.25)
    raise RuntimeError(
        f"JupyterLab did not answer within {timeout:.0f} s:\n" + log.read_text()[-3000:]
    )


def server_wait(server: subprocess.Popen, seconds: float) -> None:
    """Wait for the server process to exit, at most ``seconds`` (a poll interval)."""
    try:
        server.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


def ensure_node_modules() -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"{tool} is required for the browser tests (Node.js >= 20)"
            )
    if not (HARNESS / "node_modules" / "puppeteer-core").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=HARNESS,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci in {HARNESS} failed:\n{done.stderr[-3000:]}")


def drive(lab: Lab, plan: dict, timeout: float) -> dict:
    """Run jupyterlab.js with ``plan`` (see its header) and return its JSON report."""
    ensure_node_modules()
    plan = {"base": lab.url, "token": lab.token, **plan}
    done = subprocess.run(
        ["node", str(HARNESS / "jupyterlab.js"), json.dumps(plan)],
        cwd=HARNESS,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"server log (end):\n{lab.log.read_text()[-1500:]}\n"
            f"jupyterlab.js failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return json.loads(done.stdout)
