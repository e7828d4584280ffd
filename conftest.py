"""Settings for the whole test run, notebooks included (nbval's kernels inherit them)."""

import os

# Nobody is there to click: notebooks press their own buttons with Button.click().
os.environ["HITL_KIT_UNATTENDED"] = "1"
# The suite never talks to OpenAI, even on a machine where a key is set.
os.environ.pop("OPENAI_API_KEY", None)
