"""The screening runs of this folder: ProdLDA on 20 Newsgroups (K = 50) through the engine,
with the topics read three ways at the end: the last iterate (``topic_word_matrix``), and the
equal-weight mean over the epochs after ``START`` of the decoder's weights and BatchNorm
statistics (``avgW``) or of the normalized topic logits (``avgZ``), as stochastic weight
averaging would give them. Prints one line: seed, epochs, start, model options, training
options, then ``{"cpu", "final", "avgW", "avgZ"}`` as (NPMI, diversity) pairs.

    OMP_NUM_THREADS=1 python screen.py SEED EPOCHS START ['{"alpha": 0.5}'] ['{"batch_size": 500}']
"""

import json
import sys
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

import zoo.train as engine  # noqa: E402
from zoo import data as zoo_data  # noqa: E402
from zoo import metrics  # noqa: E402
from zoo.runs import build  # noqa: E402

torch.set_num_threads(1)
pyro.settings.set(module_local_params=True)
seed, epochs, start = (int(a) for a in sys.argv[1:4])
model_options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
train_options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
data = zoo_data.load("20news")
pyro.set_rng_seed(seed)
model, guide = build("prodlda", None, data, {"num_topics": 50, **model_options})
sums = {"n": 0}
one_epoch = engine._epoch


def epoch_and_accumulate(*args, **kwargs):
    record, last = one_epoch(*args, **kwargs)
    if record["epoch"] > start:
        norm = model.logit_norm
        w, m, v = model.beta.weight.detach().T, norm.running_mean, norm.running_var
        for key, value in (("W", w), ("m", m), ("v", v), ("Z", (w - m) / (v + norm.eps).sqrt())):
            sums[key] = sums.get(key, 0) + value
        sums["n"] += 1
    return record, last


engine._epoch = epoch_and_accumulate
config = engine.TrainConfig(**{**model.default_train_config, **train_options, "epochs": epochs,
                               "seed": seed, "device": "cpu", "validate": False,
                               "eval_every": 50})
history = engine.fit(model, guide, data, config, progress=False)


def scores(beta):
    return (round(metrics.npmi(beta, data, top_n=10).mean, 4),
            round(metrics.topic_diversity(beta, top_k=25), 3))


n = sums["n"]
mean_w, mean_m, mean_v = sums["W"] / n, sums["m"] / n, sums["v"] / n
out = {"cpu": round(sum(h["cpu_seconds"] for h in history)),
       "final": scores(model.topic_word_matrix()),
       "avgW": scores((mean_w - mean_m) / (mean_v + 1e-5).sqrt()),
       "avgZ": scores(sums["Z"] / n)}
print(seed, epochs, start, model_options, train_options, json.dumps(out), flush=True)
