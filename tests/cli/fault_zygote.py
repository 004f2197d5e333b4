"""A process that imports the zoo once and forks a real ``zoo`` command per request, for the
fault-injection tests (``test_faults.py``): each forked child runs ``zoo.cli.main(argv)`` as the
console script would, and tells the test when it starts each checkpoint write, so a SIGKILL can
land before, between or inside the writes without paying the 3 s of imports per kill.

Protocol on stdin/stdout, one JSON object per line. The test sends
``{"argv": [...], "log": PATH, "pause_in_save": K or null}``; the zygote answers
``{"pid": N}``, then the child sends ``{"save": n}`` as it starts its n-th ``torch.save`` (and,
with ``pause_in_save`` = n, ``{"inside": n}`` once half of that checkpoint is on disk, then
sleeps until it is killed), and the zygote ends with ``{"exit": code}`` (negative: the signal).
"""

import io
import json
import os
import sys
import time


def child(request: dict, status) -> None:
    import torch

    from zoo import cli

    real_save, count = torch.save, [0]

    def save(obj, f, *args, **kwargs):
        count[0] += 1
        status.write(json.dumps({"save": count[0]}) + "\n")
        status.flush()
        if request.get("pause_in_save") != count[0]:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        status.write(json.dumps({"inside": count[0]}) + "\n")
        status.flush()
        time.sleep(60)  # the test kills us here, half a checkpoint written
        f.write(data[len(data) // 2:])

    torch.save = save
    code = 0
    try:
        cli.main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    import torch

    import zoo.cli
    import zoo.plots  # noqa: F401  (matplotlib)
    from zoo.registry import list_models

    # Everything a command imports on first use, imported once and inherited by every child:
    # the model and guide families, the parser, torch's optimizer machinery (dynamo).
    torch.set_num_threads(1)
    list_models()
    zoo.cli.build_parser()
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], fused=True)
    # The figures a finished run draws take seconds of matplotlib and are not what the kills
    # test: left out.
    zoo.cli.write_figures = lambda *args: None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            status = os.fdopen(os.dup(1), "w")
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            child(request, status)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"exit": code}), flush=True)


if __name__ == "__main__":
    main()
