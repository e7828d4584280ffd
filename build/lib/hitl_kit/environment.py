"""What the kit is running on: offline or OpenAI mode, and the versions that matter."""

from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("langgraph", "langgraph-checkpoint-sqlite", "langchain-core", "langchain-openai",
            "ipywidgets", "jupyterlab", "pandas", "nbval")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def describe() -> str:
    """A few lines: the mode, the model, the versions."""
    from hitl_kit.llm import DEFAULT_OPENAI_MODEL, MODEL_ENV_VAR, online

    if online():
        model = os.environ.get(MODEL_ENV_VAR, DEFAULT_OPENAI_MODEL)
        mode = f"OpenAI mode: OPENAI_API_KEY is set, ChatOpenAI with model {model}"
    else:
        mode = "offline mode: no OPENAI_API_KEY, the deterministic offline chat model"
    width = max(len(k) for k in PACKAGES)
    lines = [mode] + [f"  {k.ljust(width)}  {v}" for k, v in versions().items()]
    return "\n".join(lines)
