"""The command line's own behaviour: the lab launcher's arguments, errors as one clean line."""

import os

import pytest

from hitl_kit import lab


@pytest.mark.parametrize("root", [True, False])
def test_launcher_allows_root_only_as_root(monkeypatch, root):
    monkeypatch.setattr(lab, "is_root", lambda: root)
    argv = lab.lab_argv()
    assert ("--allow-root" in argv) is root
    assert "--ServerApp.ip=127.0.0.1" in argv and f"--ServerApp.root_dir={lab.ROOT}" in argv
    assert "--no-browser" not in argv and not any("port" in a for a in argv)


def test_launcher_port_override_never_falls_back_to_another_port():
    argv = lab.lab_argv(port=9123, token="t", open_browser=False)
    assert {"--ServerApp.port=9123", "--ServerApp.port_retries=0",
            "--IdentityProvider.token=t", "--no-browser"} <= set(argv)


def test_launcher_keeps_the_learners_own_config_path(tmp_path):
    env = lab.lab_environment({"JUPYTER_CONFIG_PATH": "/theirs"}, tmp_path)
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == [str(tmp_path), "/theirs"]
    page_config = lab.write_page_config(tmp_path) / "labconfig" / "page_config.json"
    assert lab.NEWS_PLUGIN in page_config.read_text()
