"""`make dev` / `make test`, first step: is this Python new enough, and is `.venv` its own?

Runs under the Python the Makefile will use (``$(PYTHON)``, default ``python3``), so it is
written for old Pythons too (Python 3.6 syntax): it must be able to say "too old".

* Python older than 3.11: one line saying so, exit 1 (``make`` stops before installing).
* A ``.venv`` made by another Python (its ``pyvenv.cfg`` names another version, or its
  interpreter is gone): it is removed, with a line saying why, and ``make`` builds it again.
"""

import os
import shutil
import sys

NEEDED = (3, 11)


def too_old(version):
    """A message if ``version`` (a sys.version_info-like tuple) is older than NEEDED."""
    if tuple(version[:2]) >= NEEDED:
        return None
    return (f"Python >= {NEEDED[0]}.{NEEDED[1]} needed, found {version[0]}.{version[1]} "
            "(run: make dev PYTHON=python3.11)")


def venv_python_version(venv):
    """The "major.minor" the venv was made with, or None if it has no readable pyvenv.cfg."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg")) as cfg:
            for line in cfg:
                name, _, value = line.partition("=")
                if name.strip() in ("version", "version_info"):
                    return ".".join(value.strip().split(".")[:2])
    except OSError:
        return None
    return None


def stale_venv(venv, version):
    """Why ``venv`` must be rebuilt for Python ``version``, or None if it is fine (or absent)."""
    if not os.path.isdir(venv):
        return None
    made_with = venv_python_version(venv)
    mine = f"{version[0]}.{version[1]}"
    if made_with is None:
        return f"{venv} has no pyvenv.cfg"
    if made_with != mine:
        return f"{venv} was made by Python {made_with}, this is Python {mine}"
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        return f"{venv}'s interpreter is gone"
    return None


def main(argv):
    venv = argv[1] if len(argv) > 1 else ".venv"
    message = too_old(sys.version_info)
    if message:
        print(message, file=sys.stderr)
        return 1
    reason = stale_venv(venv, sys.version_info)
    if reason:
        print(f"Rebuilding {venv}: {reason}", file=sys.stderr)
        shutil.rmtree(venv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
