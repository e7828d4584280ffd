"""The kit's JupyterLab launcher: ``.venv/bin/python -m hitl_kit lab``.

It opens JupyterLab with the repository as its root, so ``notebooks/``, ``drills/`` and
``solutions/`` are all in the file browser, on notebook 00. It listens on 127.0.0.1 only, adds
``--allow-root`` only when you are root (JupyterLab refuses root without it), checks for no
updates, and turns the "get Jupyter news?" pop-up off. The pop-up needs more than
``--LabApp.news_url=None``: the announcements plugin is disabled in a ``labconfig/page_config.json``
the kit writes to ``.hitl_kit/jupyter/``, which is added to ``JUPYTER_CONFIG_PATH``. Your own
Jupyter settings and workspaces stay where they are.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_NOTEBOOK = "notebooks/00_start_here.ipynb"
KIT_CONFIG_DIR = ROOT / ".hitl_kit" / "jupyter"
NEWS_PLUGIN = "@jupyterlab/apputils-extension:announcements"


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def write_page_config(config_dir: Path = KIT_CONFIG_DIR) -> Path:
    """Write the page config that disables the news pop-up; return the config dir."""
    labconfig = config_dir / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    page_config = {"disabledExtensions": {NEWS_PLUGIN: True}}
    (labconfig / "page_config.json").write_text(json.dumps(page_config, indent=2) + "\n")
    return config_dir


def lab_argv(port: int | None = None, token: str | None = None,
             open_browser: bool = True) -> list[str]:
    """JupyterLab's command-line arguments (after ``jupyter lab``)."""
    argv = [
        f"--ServerApp.root_dir={ROOT}",
        "--ServerApp.ip=127.0.0.1",
        f"--LabApp.default_url=/lab/tree/{START_NOTEBOOK}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if port is not None:  # an explicit port is used or the start fails, never another one
        argv += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    if not open_browser:
        argv.append("--no-browser")
    if is_root():
        argv.append("--allow-root")
    return argv


def lab_environment(environ: dict[str, str], config_dir: Path = KIT_CONFIG_DIR) -> dict[str, str]:
    """``environ`` with the kit's config dir first on ``JUPYTER_CONFIG_PATH``."""
    paths = [str(config_dir)] + [p for p in environ.get("JUPYTER_CONFIG_PATH", "").split(
        os.pathsep) if p]
    return {**environ, "JUPYTER_CONFIG_PATH": os.pathsep.join(paths)}


def launch(port: int | None = None, token: str | None = None, open_browser: bool = True) -> int:
    """Run JupyterLab in this process until it is stopped (Ctrl-C twice, or a signal)."""
    os.environ.update(lab_environment(dict(os.environ), write_page_config()))
    from jupyterlab.labapp import LabApp

    print(f"hitl-kit: JupyterLab on 127.0.0.1, root {ROOT}, opening {START_NOTEBOOK}",
          file=sys.stderr)
    LabApp.launch_instance(argv=lab_argv(port, token, open_browser))
    return 0
