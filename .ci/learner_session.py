"""Play a learner before the test command runs: make the learner's copy as ``python -m hitl_kit
lab`` does, solve every drill in it, run every notebook, drill and solution of the copy top to
bottom in a kernel as a person would (nobody clicks), save each with its outputs, and run the
self-check. Afterwards the README's test command must still pass and git must see no change.

    .venv/bin/python .ci/learner_session.py          # in the repository's root
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    os.environ.pop("HITL_KIT_UNATTENDED", None)  # a person's session: the cards wait for clicks
    sys.path.insert(0, str(ROOT))
    import nbformat
    from nbclient import NotebookClient

    from hitl_kit.lab import prepare_work_dir, work_dir

    work = work_dir()
    print(f"the learner's copy: {work} ({len(prepare_work_dir())} notebooks copied)")
    for drill in sorted((work / "drills").glob("*.ipynb")):
        shutil.copyfile(work / "solutions" / drill.name, drill)  # solved, as a learner ends up
    for path in sorted(p for d in ("notebooks", "drills", "solutions")
                       for p in (work / d).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(notebook, path)
        print(f"ran and saved {path.relative_to(work.parent)}")
    checked = subprocess.run([sys.executable, "-m", "hitl_kit", "check"], cwd=ROOT, text=True,
                             capture_output=True)
    print(checked.stdout)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    if checked.returncode or "not attempted" in checked.stdout or status:
        sys.exit(f"the learner's session went wrong: self-check exit {checked.returncode}; "
                 f"git sees {status or 'no change'}")
    print("self-check passed on the solved drills; git sees no change")


if __name__ == "__main__":
    main()
