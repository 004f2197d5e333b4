"""Every mistake a user can make on the command line, as a table: the command, the exit code,
words the message must contain. For each: no traceback, the last line is one line that says
what is wrong, and a refused command changed no file (every option is checked before any work).

Exit code 2 is argparse's (a value of the wrong type for a flag: ``--epochs 2.5``); 1 is ours
(a value out of range, an option the model does not take, a file that does not parse, a run
folder that is not one, ...). ``{base}`` is a folder holding a trained run (``run``), damaged
copies of it, data files good and bad, and a nested-VI run; ``ro`` cases run with ``{ro}``,
``{ro_run}`` and ``{ro_nvi}`` unwritable (``READ_ONLY``, see ``helpers.unwritable``).
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli.helpers import unwritable, zoo
from zoo import runs
from zoo.data.text_formats import save_npz_corpus

GPU = torch.cuda.is_available()
TINY = ("--model-opt hidden_dims=[8] --model-opt latent_dim=2 --guide-opt hidden_dims=[8] "
        "--batch-size 256 --quiet")
T = "train vae --epochs 1 --out {base}/new --quiet"  # a new run; the cases add one mistake
R = "train --resume --out {base}/run"  # the trained run, resumed

CASES = [
    # ---- training flags: type (argparse) and range (ours), named
    ("batch size 0", f"{T} --batch-size 0", 1, ["--batch-size", "integer >= 1", "got 0"]),
    ("num particles 0", f"{T} --num-particles 0", 1, ["--num-particles", ">= 1", "got 0"]),
    ("epochs 0", f"{T} --epochs 0", 1, ["--epochs", ">= 1", "got 0"]),
    ("epochs negative", f"{T} --epochs -3", 1, ["--epochs", ">= 1", "-3"]),
    ("epochs fractional", f"{T} --epochs 2.5", 2, ["--epochs", "invalid int value", "2.5"]),
    ("clip norm negative", f"{T} --clip-norm -1", 1, ["--clip-norm", "> 0", "-1"]),
    ("clip norm zero", f"{T} --clip-norm 0", 1, ["--clip-norm", "> 0"]),
    ("threads negative", f"{T} --threads -2", 1, ["--threads", ">= 1", "-2"]),
    ("threads zero", f"{T} --threads 0", 1, ["--threads", ">= 1"]),
    ("lr zero", f"{T} --lr 0", 1, ["--lr", "> 0"]),
    ("lr negative", f"{T} --lr=-1e-3", 1, ["--lr", "> 0"]),
    ("lr nan", f"{T} --lr nan", 1, ["--lr", "finite", "nan"]),
    ("lr inf", f"{T} --lr inf", 1, ["--lr", "finite"]),
    ("lr not a number", f"{T} --lr abc", 2, ["--lr", "invalid float value", "abc"]),
    ("beta1 above 1", f"{T} --beta1 1.5", 1, ["--beta1", "[0, 1)", "1.5"]),
    ("beta2 negative", f"{T} --beta2 -0.1", 1, ["--beta2", "[0, 1)"]),
    ("kl warm-up negative", f"{T} --kl-warmup -1", 1, ["--kl-warmup", ">= 0"]),
    ("objective option unknown", f"{T} --objective-opt jat=true", 1,
     ["--objective-opt", "objective 'trace'", "jat"]),
    ("objective option not a pair", f"{T} --objective-opt jit", 1,
     ["--objective-opt", "key=value"]),
    ("objective option of another objective", f"{T} --elbo iwae-dreg --objective-opt jit=true",
     1, ["--objective-opt", "iwae-dreg cannot take jit=True"]),
    ("seed negative", f"{T} --seed -1", 1, ["--seed", "[0, 2**32)", "-1"]),
    ("seed too large", f"{T} --seed 9999999999999", 1, ["--seed", "2**32"]),
    ("device gpu", f"{T} --device gpu", 1, ["--device", "'gpu'", "cuda:N"]),
    ("device cuda:x", f"{T} --device cuda:x", 1, ["--device", "cuda:x"]),
    pytest.param("device cuda without a GPU", f"{T} --device cuda", 1,
                 ["--device", "no CUDA device"],
                 marks=pytest.mark.skipif(GPU, reason="a GPU is present")),
    ("out names a file", "train vae --out {base}/afile.txt", 1, ["--out", "a file is there"]),
    ("out inside a file", "train vae --out {base}/afile.txt/run", 1, ["--out", "is a file"]),
    ("no model", "train --out {base}/new", 1, ["name the model", "zoo list", "--resume"]),
    ("unknown model", "train vea --out {base}/new", 1, ["Unknown model 'vea'", "vae"]),
    ("unknown objective", f"{T} --elbo elbo", 1, ["--elbo", "Unknown objective", "trace"]),
    ("unknown guide", f"{T} --guide gaussian", 1, ["Unknown guide 'gaussian'", "householder"]),
    ("guide that does not fit", f"{T} --guide dirichlet", 1,
     ["does not fit model 'vae'", "diagonal_normal"]),
    # ---- --model-opt / --guide-opt / --data-opt: keys against the signature, types, ranges
    ("latent_dim 0", f"{T} --model-opt latent_dim=0", 1, ["--model-opt", "latent_dim", ">= 1"]),
    ("latent_dim abc", f"{T} --model-opt latent_dim=abc", 1,
     ["--model-opt latent_dim", "an integer", "'abc'"]),
    ("latent_dim fractional", f"{T} --model-opt latent_dim=2.5", 1, ["latent_dim", "integer"]),
    ("hidden_dims a number", f"{T} --model-opt hidden_dims=400", 1,
     ["hidden_dims", "a list of integers", "hidden_dims=[400]"]),
    ("hidden_dims with a zero", f"{T} --model-opt hidden_dims=[0]", 1, ["hidden_dims", ">= 1"]),
    ("guide hidden_dims empty", f"{T} --guide-opt hidden_dims=[]", 1,
     ["--guide-opt", "hidden_dims", "layer widths"]),
    ("num_topics negative", "train prodlda --data reuters --out {base}/new "
     "--model-opt num_topics=-3", 1, ["--model-opt", "num_topics", ">= 1", "-3"]),
    ("lda num_topics 0", "train lda --data reuters --out {base}/new --model-opt num_topics=0",
     1, ["num_topics", ">= 1"]),
    ("ctm alpha 0", "train ctm --data reuters --out {base}/new --model-opt alpha=0", 1,
     ["alpha", "> 0"]),
    ("mistyped model option", f"{T} --model-opt latnet_dim=5", 1,
     ["--model-opt latnet_dim", "did you mean 'latent_dim'?", "hidden_dims"]),
    ("mistyped guide option", f"{T} --guide-opt hiden_dims=[5]", 1,
     ["--guide-opt hiden_dims", "did you mean 'hidden_dims'?"]),
    ("mistyped data option", f"{T} --data-opt binarise=false", 1,
     ["--data-opt binarise", "did you mean 'binarize'?", "test_fraction"]),
    ("option without =", f"{T} --model-opt latent_dim", 1, ["not of the form key=value"]),
    ("option given twice", f"{T} --model-opt latent_dim=3 --model-opt latent_dim=4", 1,
     ["latent_dim", "given twice"]),
    ("input_dim set by hand", f"{T} --model-opt input_dim=10", 1,
     ["--model-opt input_dim", "set from the data", "input_dim=64"]),
    ("unknown likelihood", f"{T} --model-opt likelihood=poisson", 1,
     ["likelihood", "bernoulli", "gaussian"]),
    ("householder without flows", f"{T} --guide householder --guide-opt num_flows=0", 1,
     ["--guide-opt", "num_flows", ">= 1"]),
    ("dropout above 1", f"{T} --guide-opt dropout=1.5", 1, ["dropout", "[0, 1)", "1.5"]),
    ("test fraction 2", f"{T} --data-opt test_fraction=2", 1,
     ["--data-opt test_fraction", "(0, 1)"]),
    ("binarize maybe", f"{T} --data-opt binarize=maybe", 1, ["binarize", "true or false"]),
    ("split seed abc", f"{T} --data-opt seed=abc", 1, ["--data-opt seed", "integer"]),
    # ---- data
    ("word counts to a Bernoulli model", f"{T} --data {{base}}/corpus.npz", 1,
     ["draws images", "text"]),
    ("real pixels to a Bernoulli model", f"{T} --data-opt binarize=false", 1,
     ["needs binary pixels", "likelihood=gaussian"]),
    ("empty .npz", f"{T} --data {{base}}/empty.npz", 1, ["empty.npz", "empty file"]),
    ("random bytes .npz", f"{T} --data {{base}}/random.npz", 1,
     ["random.npz", "not a readable .npz"]),
    ("truncated .npz", f"{T} --data {{base}}/truncated.npz", 1,
     ["truncated.npz", "not a readable .npz"]),
    (".npz without arrays", f"{T} --data {{base}}/noarrays.npz", 1, ["no arrays"]),
    ("missing file", f"{T} --data {{base}}/missing.npy", 1, ["missing.npy", "no such file"]),
    ("folder that is not MNIST", f"{T} --data {{base}}/afolder", 1, ["not an MNIST folder"]),
    ("unknown format", f"{T} --data {{base}}/afile.txt.png", 1,
     ["Cannot load", "unknown format"]),
    ("text that is not UTF-8", "train prodlda --out {base}/new --data {base}/latin1.txt", 1,
     ["latin1.txt, line 2", "UTF-8"]),
    # ---- run folders and --resume
    ("existing run without --resume", "train vae --epochs 1 --out {base}/run", 1,
     ["already holds a run", "epoch 2 of 2", "--resume", "--overwrite"]),
    ("resume and overwrite", f"{R} --overwrite", 1, ["--resume", "--overwrite", "one of them"]),
    ("resume a folder without a run", "train --resume --out {base}/afolder", 1,
     ["holds no run", "config.json"]),
    ("resume with another batch size", f"{R} --batch-size 64", 1,
     ["--batch-size 64", "differs", "256", "config.json", "--epochs"]),
    ("resume with another model option", f"{R} --model-opt latent_dim=9", 1,
     ["--model-opt latent_dim", "differs"]),
    ("resume to fewer epochs", f"{R} --epochs 1", 1, ["--epochs 1", "below", "total of 2"]),
    ("resume with another seed", f"{R} --seed 7", 1, ["--seed", "differs"]),
    ("resume with an objective option", f"{R} --objective-opt jit=true", 1,
     ["--objective-opt jit", "differs", "(not set)"]),
    ("resume with another objective", f"{R} --elbo iwae", 1, ["--elbo", "iwae", "differs"]),
    ("resume with other data", f"{R} --data reuters", 1, ["--data", "differs"]),
    ("resume with another guide", f"{R} --guide householder", 1, ["--guide", "differs"]),
    ("resume as another model", "train lda --resume --out {base}/run", 1,
     ["model lda", "differs", "vae"]),
    ("resume with a bad lr", f"{R} --lr abc", 2, ["--lr", "invalid float"]),
    ("resume an empty checkpoint", "train --resume --out {base}/empty_ckpt", 1,
     ["empty_ckpt/checkpoint.pt", "empty file", "zoo train --resume"]),
    ("train into a read-only place", "train vae --out {ro}/new", 1,
                 ["--out", "cannot write there"]),
    # ---- evaluate
    ("evaluate num particles -5", "evaluate {base}/run --num-particles -5", 1,
     ["--num-particles", ">= 0", "-5"]),
    ("evaluate chunk size 0", "evaluate {base}/run --chunk-size 0", 1, ["--chunk-size", ">= 1"]),
    ("evaluate batch size 0", "evaluate {base}/run --batch-size 0", 1, ["--batch-size", ">= 1"]),
    ("evaluate elbo particles 0", "evaluate {base}/run --elbo-particles 0", 1,
     ["--elbo-particles", ">= 1"]),
    ("evaluate refine -1", "evaluate {base}/run --refine -1", 1, ["--refine", ">= 0"]),
    ("evaluate device gpu", "evaluate {base}/run --device gpu", 1, ["--device", "gpu"]),
    ("evaluate threads 0", "evaluate {base}/run --threads 0", 1, ["--threads", ">= 1"]),
    ("evaluate a folder that is no run", "evaluate {base}/afolder", 1, ["not a run folder"]),
    ("empty checkpoint", "evaluate {base}/empty_ckpt", 1,
     ["checkpoint.pt", "empty file (0 bytes)", "zoo train --resume --out"]),
    ("truncated checkpoint", "evaluate {base}/truncated_ckpt", 1,
     ["truncated_ckpt/checkpoint.pt", "not a readable checkpoint", "Restore it"]),
    ("random checkpoint", "evaluate {base}/random_ckpt", 1,
     ["random_ckpt/checkpoint.pt", "not a readable checkpoint"]),
    ("checkpoint of another model", "evaluate {base}/foreign_ckpt", 1,
     ["checkpoint.pt", "do not fit", "config.json"]),
    ("no checkpoint yet", "evaluate {base}/no_ckpt", 1,
     ["no checkpoint.pt yet", "zoo train --resume --out"]),
    ("config not JSON", "evaluate {base}/bad_json", 1, ["bad_json/config.json", "not valid JSON"]),
    ("config with an unknown key", "evaluate {base}/unknown_key", 1,
     ["config.json", "unknown key 'notes'"]),
    ("config with an unknown model option", "evaluate {base}/unknown_option", 1,
     ["config.json", "latnet_dim", "did you mean 'latent_dim'?"]),
    ("old config without an option", "evaluate {base}/missing_option", 1,
     ["config.json", "no 'latent_dim'", "0.2.0 or earlier", "add"]),
    ("config without a model", "evaluate {base}/no_model", 1, ["no 'model' entry"]),
    ("data moved away", "evaluate {base}/moved_data", 1, ["not there any more", "data.name"]),
    ("evaluate --out into a file", "evaluate {base}/run --out {base}/afile.txt/x.json", 1,
     ["--out", "is a file"]),
    ("evaluate a read-only run", "evaluate {ro_run}", 1,
                 ["heldout_elbo", "could not write", "summary.json", "--out"]),
    ("evaluate --out into a read-only place", "evaluate {base}/run --out {ro}/s.json",
                 1, ["--out", "cannot write"]),
    # ---- sample, topics
    ("sample num 0", "sample {base}/run --num 0", 1, ["--num", ">= 1"]),
    ("sample a folder that is no run", "sample {base}/afolder", 1, ["not a run folder"]),
    ("sample a read-only run", "sample {ro_run}", 1, ["cannot write"]),
    ("topics num words 0", "topics {base}/run --num-words 0", 1, ["--num-words", ">= 1"]),
    ("topics of an image model", "topics {base}/run", 1, ["not a topic model"]),
    # ---- data prepare
    ("prepare a missing file", "data prepare {base}/nothere.txt --out {base}/c.npz", 1,
     ["nothere.txt", "no such file"]),
    ("prepare a folder", "data prepare {base}/afolder --out {base}/c.npz", 1,
     ["afolder", "a folder"]),
    ("prepare into a folder", "data prepare {base}/docs.txt --out {base}/afolder", 1,
     ["--out", "a folder is there"]),
    ("prepare into a non-.npz file", "data prepare {base}/docs.txt --out {base}/c.csv", 1,
     ["--out", ".npz"]),
    ("prepare vocab size 0", "data prepare {base}/docs.txt --out {base}/c.npz --vocab-size 0",
     1, ["--vocab-size", ">= 1"]),
    ("prepare min-df negative", "data prepare {base}/docs.txt --out {base}/c.npz --min-df -1", 2,
     ["--min-df", "number of documents", "fraction"]),
    ("prepare max-df above 1", "data prepare {base}/docs.txt --out {base}/c.npz --max-df 1.5",
     2, ["--max-df", "(0, 1]"]),
    ("prepare an empty file", "data prepare {base}/empty.txt --out {base}/c.npz", 1,
     ["empty.txt", "cannot build a vocabulary"]),
    ("prepare text that is not UTF-8", "data prepare {base}/latin1.txt --out {base}/c.npz", 1,
     ["latin1.txt, line 2", "not valid UTF-8"]),
    # ---- list, options
    ("list an unknown model", "list vea", 1, ["Unknown model 'vea'"]),
    ("options of an unknown model", "options vea", 1, ["Unknown model 'vea'"]),
    # ---- nested VI
    ("nvi one level", "nvi train --num-levels 1 --out {base}/nvi_new", 1,
     ["--num-levels", ">= 2"]),
    ("nvi iterations 0", "nvi train --iterations 0 --out {base}/nvi_new", 1,
     ["--iterations", ">= 1"]),
    ("nvi eval every 0", "nvi train --eval-every 0 --out {base}/nvi_new", 1, ["--eval-every"]),
    ("nvi lr negative", "nvi train --lr -1 --out {base}/nvi_new", 1, ["--lr", "> 0"]),
    ("nvi eval particles 0", "nvi train --eval-particles 0 --out {base}/nvi_new", 1,
     ["--eval-particles"]),
    ("nvi device gpu", "nvi train --device gpu --out {base}/nvi_new", 1, ["--device"]),
    ("nvi unknown target", "nvi train --target moon --out {base}/nvi_new", 2,
     ["--target", "invalid choice"]),
    ("nvi evaluate a folder that is no run", "nvi evaluate {base}/afolder", 1,
     ["not a run folder"]),
    ("nvi existing run", "nvi train --target banana --out {base}/nvi_run", 1,
     ["already holds a run", "--resume", "--overwrite"]),
    ("nvi resume another target", "nvi train --resume --target ring --out {base}/nvi_run", 1,
     ["--target", "differs", "banana"]),
    ("nvi evaluate a read-only run", "nvi evaluate {ro_nvi} --eval-batches 2", 1,
     ["log_z", "could not write", "evaluation.json", "--out"]),
    ("nvi resume to fewer iterations", "nvi train --resume --iterations 5 --out {base}/nvi_run",
     1, ["--iterations 5", "below"]),
]

#: the cases run with {ro} and {ro_run} unwritable
READ_ONLY = {"train into a read-only place", "evaluate a read-only run",
             "evaluate --out into a read-only place", "sample a read-only run",
             "nvi evaluate a read-only run"}

ANSWERS = [  # commands that succeed and what they print
    ("options of a model", "options vae", ["model options", "latent_dim", "integer", "20",
                                           "householder", "num_flows", "--lr 0.001",
                                           "binarize=true"]),
    ("list MODEL", "list vae",
     ["latent_dim", "hidden_dims", "list of integers", "[400]"]),
    ("options shows a model's own defaults", "options prodlda",
     ["num_topics", "--lr 0.002", "--beta1 0.99", "\"shift\"", "every 25 epochs"]),
    ("train --help shows the defaults", "train --help",
     ["default 10", "default 128", "default 0.001", "prodlda: lr 0.002", "--overwrite"]),
    ("a corpus of fewer than 10 words", "train prodlda --data {base}/tiny.npz --epochs 2 "
     "--model-opt num_topics=2 --out {base}/tiny_run --quiet", ["perplexity", "npmi"]),
]


def make_corpus(path, num_words, rng, docs=40):
    counts = rng.poisson(1.0, size=(docs, num_words))
    counts[:, 0] += 1  # no empty document
    save_npz_corpus(path, counts, [f"w{i}" for i in range(num_words)])


@pytest.fixture(scope="module")
def base():
    """Everything the cases point at, in a world-readable folder (``unwritable`` may read it as
    ``nobody``)."""
    import pyro

    folder = Path(tempfile.mkdtemp(prefix="zoo-bad-input-"))
    folder.chmod(0o755)
    rng = np.random.default_rng(0)
    with pyro.settings.context(module_local_params=True), pytest.MonkeyPatch.context() as patch:
        from zoo import cli

        patch.setattr(cli, "write_figures", lambda *args: None)  # seconds, and not needed here
        cli.main(["train", "vae", "--epochs", "2", *TINY.split(), "--out", str(folder / "run")])
        cli.main(["nvi", "train", "--target", "banana", "--num-levels", "2", "--iterations",
                  "10", "--eval-every", "10", "--eval-batches", "2", "--eval-particles", "8",
                  "--quiet", "--out", str(folder / "nvi_run")])
    (folder / "afile.txt").write_text("not a folder\n")
    (folder / "afile.txt.png").write_text("not an image\n")
    (folder / "afolder").mkdir()
    (folder / "docs.txt").write_text("the cat sat on the mat\nstocks fell as markets closed\n")
    (folder / "empty.txt").write_text("")
    (folder / "latin1.txt").write_bytes("first line\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    make_corpus(folder / "corpus.npz", 30, rng)
    make_corpus(folder / "tiny.npz", 6, rng)
    (folder / "empty.npz").write_bytes(b"")
    (folder / "random.npz").write_bytes(rng.bytes(600))
    whole = (folder / "corpus.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    np.savez(folder / "noarrays.npz")

    def damaged(name, checkpoint=None, edit=None, drop_checkpoint=False):
        shutil.copytree(folder / "run", folder / name)
        if checkpoint is not None:
            (folder / name / runs.CHECKPOINT).write_bytes(checkpoint)
        if drop_checkpoint:
            (folder / name / runs.CHECKPOINT).unlink()
        if edit is not None:
            config = json.loads((folder / name / runs.CONFIG).read_text())
            edit(config)
            (folder / name / runs.CONFIG).write_text(json.dumps(config))

    ckpt = (folder / "run" / runs.CHECKPOINT).read_bytes()
    damaged("empty_ckpt", checkpoint=b"")
    damaged("truncated_ckpt", checkpoint=ckpt[: len(ckpt) // 3])
    damaged("random_ckpt", checkpoint=rng.bytes(4096))
    damaged("foreign_ckpt", edit=lambda c: c["model_config"].update(latent_dim=3))
    damaged("no_ckpt", drop_checkpoint=True)
    damaged("bad_json")
    (folder / "bad_json" / runs.CONFIG).write_text('{"model": "vae", "model_config": {')
    damaged("unknown_key", edit=lambda c: c.update(notes="mine"))
    damaged("unknown_option", edit=lambda c: c["model_config"].update(latnet_dim=2))

    def old_without_latent_dim(config):
        del config["model_config"]["latent_dim"]
        del config["versions"]["zoo"]  # as runs before this version wrote it

    damaged("missing_option", edit=old_without_latent_dim)
    damaged("no_model", edit=lambda c: c.pop("model"))
    damaged("moved_data", edit=lambda c: c["data"].update(name=str(folder / "gone.npy"),
                                                          sha256="0" * 64))
    (folder / "ro").mkdir()
    shutil.copytree(folder / "run", folder / "ro_run")
    shutil.copytree(folder / "nvi_run", folder / "ro_nvi")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def files(folder: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def run_case(command, base, capsys, monkeypatch, read_only=False):
    monkeypatch.chdir(base)
    command = command.format(base=base, ro=base / "ro", ro_run=base / "ro_run",
                             ro_nvi=base / "ro_nvi")
    if not read_only:
        return zoo(command, capsys)
    with unwritable(base / "ro", base / "ro_run", base / "ro_nvi"):
        return zoo(command, capsys)


@pytest.mark.parametrize("name,command,code,words", CASES,
                         ids=[getattr(c, "values", c)[0] for c in CASES])
def test_a_mistake_is_refused_by_name_before_any_work(name, command, code, words, base,
                                                      capsys, monkeypatch):
    before = files(base)
    outcome = run_case(command, base, capsys, monkeypatch, read_only=name in READ_ONLY)
    assert outcome.code == code, outcome.output
    assert "Traceback" not in outcome.output
    for word in words:
        assert word.format(base=base) in outcome.output, f"{word!r} not in {outcome.output!r}"
    last = outcome.last_line  # the message: one line at the end
    assert (last.startswith("error: ") if code == 1 else ": error: argument " in last), last
    assert files(base) == before, "a refused command changed files"


def test_the_table_covers_at_least_sixty_mistakes():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name,command,words", ANSWERS, ids=[a[0] for a in ANSWERS])
def test_help_and_options_answer(name, command, words, base, capsys, monkeypatch):
    outcome = run_case(command, base, capsys, monkeypatch)
    assert outcome.code == 0, outcome.output
    assert "Traceback" not in outcome.output
    for word in words:
        assert word in outcome.output, f"{word!r} not in {outcome.output[-2000:]!r}"


def test_a_read_only_run_is_evaluated_elsewhere_with_out(base, capsys, monkeypatch):
    elsewhere = base / "writable"
    elsewhere.mkdir(exist_ok=True)
    elsewhere.chmod(0o777)  # nobody may write here
    outcome = run_case(f"evaluate {{ro_run}} --out {elsewhere}", base, capsys, monkeypatch,
                       read_only=True)
    assert outcome.code == 0, outcome.output
    summary = json.loads((elsewhere / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary == json.loads(outcome.output)
    assert os.stat(elsewhere / "summary.json").st_mode & 0o777 == 0o644 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
