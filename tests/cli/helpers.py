"""What the command-line tests share: ``zoo`` run in this process as a user would see it (its
exit code and everything it printed), and a folder the command cannot write into."""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass

from zoo import cli

NOBODY = 65534


@dataclass
class Outcome:
    code: int
    output: str  # stdout, then stderr, then the message SystemExit carried (Python prints it)

    @property
    def last_line(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def zoo(command, capsys) -> Outcome:
    """``zoo COMMAND`` (a string, shell-quoted, or a list) through :func:`zoo.cli.main`. An
    exception other than ``SystemExit`` propagates: the user would have seen a traceback."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    capsys.readouterr()
    code, message = 0, ""
    try:
        cli.main(argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            code, message = 1, exc.code
        else:
            code = exc.code or 0
    captured = capsys.readouterr()
    return Outcome(code, captured.out + captured.err + message)


@contextlib.contextmanager
def unwritable(*folders):
    """``folders`` read-only for the duration. Root writes anywhere whatever the mode, so as root
    the process also takes the identity of ``nobody`` meanwhile (its real id stays root, which
    lets it come back); what the command reads must then be world-readable."""
    import encodings.latin_1  # noqa: F401  (checkpoints unpickle with it: import it while we
    # can, Python's own library may be unreadable to nobody, as under /root/.pyenv)

    for folder in folders:
        folder.chmod(0o555)
    root = os.geteuid() == 0
    try:
        if root:
            os.seteuid(NOBODY)
        yield
    finally:
        if root:
            os.seteuid(0)
        for folder in folders:
            folder.chmod(0o755)
