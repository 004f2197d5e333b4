"""Fault injection: ``zoo train`` killed with SIGKILL at random moments (during start-up,
between checkpoints, and inside a checkpoint write, half of it on disk) 20 times; after every
kill the run folder loads and ``zoo train --resume`` continues it, and the run that went through
all the kills ends bit for bit where an uninterrupted run ends. Ctrl-C stops a real ``zoo``
process with one line that says how to resume.

The killed processes are forked from a zygote that imported the zoo once
(``fault_zygote.py``), so twenty kills take seconds, not the minute twenty fresh interpreters
would; each is a real process running ``zoo.cli.main``, as the console script does.
"""

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import cli, runs

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 40
TINY = ["--model-opt", "latent_dim=2", "--model-opt", "hidden_dims=[8]", "--guide-opt",
        "hidden_dims=[8]", "--batch-size", "64", "--seed", "3", "--quiet", "--threads", "1"]


def environment() -> dict:
    # the repository first on the path: the package as it is in this checkout
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


class Zygote:
    """The test's end of ``fault_zygote.py``."""

    def __init__(self, cwd: Path):
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("fault_zygote.py"))], cwd=cwd,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment())
        self.messages: queue.Queue = queue.Queue()
        self.exit = None  # an exit seen while waiting for something else
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next("ready", timeout=120)

    def _read(self):
        for line in self.process.stdout:
            self.messages.put(json.loads(line))

    def next(self, key: str, timeout: float):
        """The value of the next message carrying ``key`` (others before it are dropped);
        ``None`` when the child exits first."""
        if key == "exit" and self.exit is not None:
            code, self.exit = self.exit, None
            return code
        deadline = time.monotonic() + timeout
        while True:
            message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            if key in message:
                return message[key]
            if "exit" in message:
                self.exit = message["exit"]
                return None

    def run(self, argv, log, pause_in_save=None) -> int:
        self.process.stdin.write(json.dumps({"argv": argv, "log": str(log),
                                             "pause_in_save": pause_in_save}) + "\n")
        self.process.stdin.flush()
        return self.next("pid", timeout=60)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.process.stdout.close()


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first
        pass


def check_loads(run: Path) -> int:
    """The run folder after a kill: whatever is there parses and loads; returns the epoch of
    its checkpoint (0 without one)."""
    if not (run / runs.CONFIG).exists():
        assert not (run / runs.CHECKPOINT).exists()
        return 0
    runs.check_config(runs.read_config(run), run)  # complete JSON, every key known
    if not (run / runs.CHECKPOINT).exists():
        return 0
    _, _, _, _, ckpt = runs.load_run(run)
    lines = (run / runs.METRICS).read_text().splitlines() if (run / runs.METRICS).exists() \
        else []
    epochs = [json.loads(line)["epoch"] for line in lines]  # every line whole
    assert len(ckpt["history"]) == ckpt["epoch"]
    # the checkpoint is written before its epoch's line: at most that line is missing
    assert epochs in (list(range(1, ckpt["epoch"] + 1)), list(range(1, ckpt["epoch"])))
    return ckpt["epoch"]


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    np.save(folder / "pixels.npy", (rng.random((200, 16)) < 0.3).astype(np.float32))
    return folder


def test_twenty_random_kills_lose_nothing_and_resume_bit_for_bit(pixels, monkeypatch):
    rng = random.Random(12)
    run, log = pixels / "killed", pixels / "killed.log"
    zygote = Zygote(pixels)
    kills, modes, epochs, total = 0, [], [], EPOCHS
    try:
        while kills < 20:
            if (run / runs.CONFIG).exists():
                argv = ["train", "--resume", "--out", str(run), "--quiet", "--threads", "1"]
                argv += ["--epochs", str(total)] if total != EPOCHS else []
            else:
                argv = ["train", "vae", "--data", "pixels.npy", "--epochs", str(EPOCHS), *TINY,
                        "--out", str(run)]
            mode = ("start-up", "between checkpoints", "inside a checkpoint write")[kills % 3]
            pause = rng.randint(1, 2) if mode.startswith("inside") else None
            pid = zygote.run(argv, log, pause_in_save=pause)
            if mode == "start-up":
                time.sleep(rng.uniform(0.0, 0.3))
            elif mode == "between checkpoints":
                zygote.next("save", timeout=60)  # the k-th write has begun ...
                for _ in range(rng.randint(0, 2)):
                    zygote.next("save", timeout=60)
                time.sleep(rng.uniform(0.0, 0.05))  # ... and maybe ended
            else:
                zygote.next("inside", timeout=60)
            kill(pid)
            code = zygote.next("exit", timeout=60)
            if code == -signal.SIGKILL:
                kills += 1
                modes.append(mode)
                epochs.append(check_loads(run))
            else:  # it finished before the kill: make the run longer and go on killing
                assert code == 0, log.read_text()[-3000:]
                total += 10
        pid = zygote.run(["train", "--resume", "--out", str(run), "--quiet", "--threads", "1"]
                         + (["--epochs", str(total)] if total != EPOCHS else []), log)
        assert zygote.next("exit", timeout=300) == 0, log.read_text()[-3000:]
    finally:
        zygote.close()
    assert modes.count("inside a checkpoint write") >= 6 and len(modes) == 20
    assert "Traceback" not in log.read_text()
    assert epochs == sorted(epochs) and epochs[-1] > 0  # progress kept across the kills
    assert not list(run.glob("*.tmp"))  # what a kill mid-write left was cleaned up
    config = runs.read_config(run)
    assert len(config["resumes"]) >= 10 and config["train"]["epochs"] == total

    # the same run without interruptions, in this process (figures are not what is tested)
    monkeypatch.setattr(cli, "write_figures", lambda *args: None)
    cli.main(["train", "vae", "--data", str(pixels / "pixels.npy"), "--epochs", str(total),
              *TINY, "--out", str(pixels / "straight")])
    killed, straight = (torch.load(folder / runs.CHECKPOINT, weights_only=False)
                        for folder in (run, pixels / "straight"))
    for part in ("model", "guide"):
        assert killed[part].keys() == straight[part].keys()
        assert all(torch.equal(killed[part][k], straight[part][k]) for k in killed[part])
    clocks = ("seconds", "cpu_seconds", "points_per_second")
    assert [{k: v for k, v in h.items() if k not in clocks} for h in killed["history"]] == \
        [{k: v for k, v in h.items() if k not in clocks} for h in straight["history"]]


def zoo_command() -> list[str]:
    script = Path(sys.executable).with_name("zoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "zoo.cli"]


def default_sigint():
    """Ctrl-C as a terminal delivers it: a shell starts background jobs with SIGINT ignored,
    a child inherits that, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_real_zoo_process_with_one_line_and_the_run_resumes(pixels,
                                                                          monkeypatch):
    run = pixels / "interrupted"
    with subprocess.Popen(
            [*zoo_command(), "train", "vae", "--data", "pixels.npy", "--epochs", "30",
             *[a for a in TINY if a != "--quiet"], "--out", str(run)],
            cwd=pixels, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=environment(), preexec_fn=default_sigint) as process:
        for line in process.stderr:  # off a terminal: one line per epoch
            if line.startswith("epoch   2/30"):
                process.send_signal(signal.SIGINT)
                break
        rest = process.stderr.read()
        process.wait(timeout=60)
    assert process.returncode == 130, rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("stopped at epoch ") and f"zoo train --resume --out {run}" in last, rest
    stopped = int(last.split()[3].rstrip(";"))
    assert stopped >= 2 and runs.load_checkpoint(run / runs.CHECKPOINT)["epoch"] == stopped
    monkeypatch.setattr(cli, "write_figures", lambda *args: None)  # not what is tested here
    cli.main(["train", "--resume", "--out", str(run), "--quiet"])
    ckpt = runs.load_checkpoint(run / runs.CHECKPOINT)
    assert ckpt["epoch"] == 30 and [h["epoch"] for h in ckpt["history"]] == list(range(1, 31))
