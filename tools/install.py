"""`make`'s installer: `uv pip install ARGS` into the running interpreter's venv, configured as this machine's pip is.

    .venv/bin/python tools/install.py -e ".[dev]"

uv installs the dependencies in seconds where pip takes a minute, but reads neither pip.conf nor PIP_* variables.
What pip is configured with here (`pip config list`: files and environment, the later overriding the earlier)
is handed on: the index, extra indexes, find-links, constraints, certificate bundle and timeout, and pip's way of
choosing among indexes (the best version from any of them; uv's default takes the first index that has a
package, which would pick a local mirror's older release). Without uv (it could not be installed), pip itself
installs, as before.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path


def pip_config() -> dict[str, str]:
    """pip's effective settings by name (index-url, find-links, ...), from `pip config list`."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=False).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        section, _, name = key.partition(".")
        if name and section in ("global", "install", ":env:", ""):
            try:
                settings[name] = str(ast.literal_eval(value))
            except (ValueError, SyntaxError):
                settings[name] = value.strip("'\"")
    return settings


def uv_arguments(pip: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv's command-line arguments and environment for pip's settings."""
    args = ["--index-strategy", "unsafe-best-match"]
    env: dict[str, str] = {}
    if index := pip.get("index-url"):
        args += ["--default-index", index]
    for option, setting in (("--index", "extra-index-url"), ("--find-links", "find-links"),
                            ("--constraint", "constraint")):
        for value in pip.get(setting, "").split():
            args += [option, value]
    if pip.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        args.append("--no-index")
    if cert := pip.get("cert"):
        env["SSL_CERT_FILE"] = cert
        args.append("--native-tls")
    if timeout := pip.get("default-timeout") or pip.get("timeout"):
        env["UV_HTTP_TIMEOUT"] = str(int(float(timeout)))
    return args, env


def main(requirements: list[str]) -> int:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None and subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "uv"]).returncode == 0:
        uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        print("uv could not be installed: installing with pip", file=sys.stderr)
        return subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *requirements]).returncode
    args, env = uv_arguments(pip_config())
    # Compiled now, in parallel, as pip does: else every first import compiles, and the first `ops up` (three
    # processes importing Prefect at once) took three times as long.
    command = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", sys.executable, *args,
               *requirements]
    return subprocess.run(command, env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
