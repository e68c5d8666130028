"""The README's two set-up commands and .ci/run must not drift apart."""

import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _read(name):
  with open(os.path.join(ROOT, name), encoding="utf-8") as f:
    return f.read()


def _readme_commands():
  block = re.search(r"```bash\n(.*?)```", _read("README.md"), re.S).group(1)
  return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_exactly_two_commands():
  commands = _readme_commands()
  assert len(commands) == 2, commands
  assert "python -m tgt_jax.main --config=configs/digits.py" in commands[0]
  assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
  assert _readme_commands()[1] in _read(".ci/run")
