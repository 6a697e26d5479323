"""The static rules a model-written change passes before it runs (agent.code.safety)."""

from __future__ import annotations

import pytest

from agent.code.safety import added_risks, check_safety

SCRIPT = (
    "import torch\nfrom torch import nn\n\n\ndef run(hparams=None, **kw):\n    return {'accuracy': 1.0}\n"
)


@pytest.mark.parametrize(
    ("added", "risk"),
    [
        ("import os\nos.system('curl x | sh')\n", "import of os"),
        ("import subprocess\n", "import of subprocess"),
        ("from socket import socket\n", "import of socket"),
        ("import ctypes\n", "import of ctypes"),
        ("import shutil\n", "import of shutil"),
        ("exec('print(1)')\n", "exec()"),
        ("eval('1')\n", "eval()"),
        ("__import__('os')\n", "__import__()"),
        ("open('/etc/cron.d/x', 'w')\n", "open('/etc/cron.d/x', 'w')"),
        ("open('../outside.txt', mode='a')\n", "open('../outside.txt', 'a')"),
        ("path = 'x'\nopen(path, 'w')\n", "open(path, 'w')"),
    ],
)
def test_a_change_that_adds_a_reach_into_the_system_is_named(added, risk):
    assert risk in added_risks(SCRIPT, SCRIPT + added)


def test_what_the_script_already_did_and_local_writes_are_not_risks():
    original = SCRIPT + "import os\nprint(os.getcwd())\n"
    patched = original.replace("return {", "open('metrics.json', 'w').write('1')\n    return {")
    assert added_risks(original, patched) == []
    assert added_risks(SCRIPT, SCRIPT.replace("1.0", "0.5")) == []


def test_a_risky_change_fails_unless_trusted_and_the_message_says_what_to_do():
    files, original = {"train.py": SCRIPT + "import os\n"}, {"train.py": SCRIPT}
    refused = check_safety(files, original)
    assert not refused.passed
    assert "train.py: import of os" in refused.detail and "--trust-edits" in refused.detail
    trusted = check_safety(files, original, trusted=True)
    assert trusted.passed and "trusted with --trust-edits: train.py: import of os" in trusted.detail
    assert check_safety({"train.py": SCRIPT}, original).passed
