"""The kit's JupyterLab launcher: ``.venv/bin/python -m hitl_kit lab``.

It gives you **your own copy** of the notebooks, drills and solutions in ``my-work/`` (kept out
of git; ``HITL_KIT_WORK`` puts it elsewhere) and opens JupyterLab there, on notebook 00. Your
answers, your saves and JupyterLab's autosave all land in that copy; ``notebooks/``, ``drills/``
and ``solutions/`` stay the kit's own, as the test suite checks them. The copy is made file by
file the first time a notebook is missing from it, and never overwritten (rename or delete a
file of yours to get the kit's version again). Each copy carries this Python's kernel
description, so JupyterLab does not mark it modified the moment it opens it. ``my-work/hitl_kit``
links to the package, so a module is one click away from the notebook that uses it.

JupyterLab listens on 127.0.0.1 only, gets ``--allow-root`` only when you are root (JupyterLab
refuses root without it), checks for no updates, and has the "get Jupyter news?" pop-up turned
off. The pop-up needs more than ``--LabApp.news_url=None``: the announcements plugin is disabled
in a ``labconfig/page_config.json`` the kit writes to ``.hitl_kit/jupyter/``, which is added to
``JUPYTER_CONFIG_PATH``. Your own Jupyter settings and workspaces stay where they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_NOTEBOOK = "notebooks/00_start_here.ipynb"
KIT_CONFIG_DIR = ROOT / ".hitl_kit" / "jupyter"
NEWS_PLUGIN = "@jupyterlab/apputils-extension:announcements"
WORK_ENV = "HITL_KIT_WORK"
COPIED_FOLDERS = ("notebooks", "drills", "solutions")  # the kit's notebooks, copied for you
PACKAGE_LINK = "hitl_kit"


def work_dir() -> Path:
    """Where your copy lives: ``my-work/`` in the repository, or ``$HITL_KIT_WORK``."""
    return Path(os.environ.get(WORK_ENV) or ROOT / "my-work")


def learner_copy(source: Path) -> Path:
    """Your copy of one of the kit's notebooks (``drills/x.ipynb`` -> ``my-work/drills/x.ipynb``)
    once the launcher has made it; until then the kit's own file."""
    source = Path(source)
    try:
        copy = work_dir() / source.resolve().relative_to(ROOT)
    except ValueError:  # not one of the kit's files
        return source
    return copy if copy.is_file() else source


def kernel_metadata() -> dict:
    """The kernel description JupyterLab writes into a notebook when its kernel starts (the
    kernel being this Python): a notebook that already carries it opens unmodified."""
    from ipykernel.ipkernel import IPythonKernel

    return {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                           "name": "python3"},
            "language_info": dict(IPythonKernel.language_info)}


def prepare_work_dir(work: Path | None = None) -> list[Path]:
    """Copy every notebook of the kit that ``work`` does not have yet (yours are never touched);
    link the package beside them. Returns the files copied."""
    import nbformat

    work = Path(work) if work is not None else work_dir()
    copied, metadata = [], None
    for folder in COPIED_FOLDERS:
        for source in sorted((ROOT / folder).glob("*.ipynb")):
            copy = work / folder / source.name
            if copy.exists():
                continue
            metadata = metadata or kernel_metadata()
            notebook = nbformat.read(source, as_version=4)
            notebook.metadata.update(metadata)
            copy.parent.mkdir(parents=True, exist_ok=True)
            partial = copy.with_suffix(".partial")
            partial.write_text(nbformat.writes(notebook) + "\n", encoding="utf-8")
            partial.replace(copy)  # a copy is whole or absent, never half written
            copied.append(copy)
    link = work / PACKAGE_LINK
    if not link.exists() and not link.is_symlink():
        with contextlib.suppress(OSError):  # no symlinks here (Windows without the right)
            link.symlink_to(ROOT / PACKAGE_LINK, target_is_directory=True)
    return copied


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
    """JupyterLab's command-line arguments (after ``jupyter lab``): your copy is its root."""
    argv = [
        f"--ServerApp.root_dir={work_dir()}",
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
    copied = prepare_work_dir()
    from jupyterlab.labapp import LabApp

    work = work_dir()
    if copied:
        print(f"hitl-kit: copied {len(copied)} notebook(s) into {work}: your copy, kept out of "
              "git; work there", file=sys.stderr)
    print(f"hitl-kit: JupyterLab on 127.0.0.1, root {work} (your copy), opening "
          f"{START_NOTEBOOK}", file=sys.stderr)
    LabApp.launch_instance(argv=lab_argv(port, token, open_browser))
    return 0
