"""Settings for the whole test run, notebooks included (nbval's kernels inherit them)."""

import os
import tempfile

# Nobody is there to click: notebooks press their own buttons with Button.click().
os.environ["HITL_KIT_UNATTENDED"] = "1"
# The suite keeps its own progress file: the learner's stays as the learner left it.
os.environ["HITL_KIT_PROGRESS"] = os.path.join(tempfile.mkdtemp(prefix="hitl-progress-"),
                                               "progress.json")
# ...and never reads the learner's copy of the notebooks (my-work/): the kit's own are checked.
os.environ["HITL_KIT_WORK"] = os.path.join(tempfile.mkdtemp(prefix="hitl-work-"), "my-work")
# The suite never talks to OpenAI, even on a machine where a key is set.
os.environ.pop("OPENAI_API_KEY", None)
# ...nor a PostgreSQL server of yours: the PostgreSQL tests start a private one.
os.environ.pop("HITL_KIT_DATABASE_URL", None)
