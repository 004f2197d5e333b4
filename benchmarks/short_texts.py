r"""Short-text topic models on Debian's fortunes: GraphBTM against a library biterm topic model.

Data: the fortune files of Debian's package ``fortunes`` (``zoo.data.load("fortunes")``: 43
categories, about 15,000 texts of a median 5 words after English stop words; vocabulary of the
2,000 most frequent words seen in at least 2 texts and at most half of them; 80/20 split, seed
0). The benchmark installs nothing: without the files it says how to get them and stops.

Methods, each at K = 20 and 40 and each training seed:

- **GraphBTM** (``gbtm`` + ``gcn_normal``): mini-corpora of 3 texts, biterms within 30 tokens,
  with BTM's biterm likelihood and its topics fitted by online EM (the defaults); **GraphBTM
  (gradient)** with the topics fitted by the ELBO's gradient instead (``topic_step="gradient"``);
  **GraphBTM (endpoints)** with the paper's likelihood of each biterm's words on their own
  (``likelihood="endpoints"``);
- **BTM** from ``bitermplus`` (Yan et al.'s collapsed Gibbs sampler on the biterms of each text,
  window 30, alpha = 50 / K, beta = 0.01, the BTM paper's priors), skipped with a message when
  the package is not installed (``pip install bitermplus``);
- **ProdLDA** and **LDA** (``dirichlet`` guide), the zoo's bag-of-words models, at their
  defaults (the epochs below).

Reported: NPMI of the top 10 words with document co-occurrence over the whole corpus (every
text a document; never-co-occurring pairs score -1), topic diversity (top 25), and how well the
topics sort the held-out texts into their categories: each text goes to its most probable topic
(GraphBTM and ProdLDA: the encoder's posterior mean for the text alone; LDA: 100 E-step updates
at the topics' posterior mean; BTM: ``transform``, the sum over the text's biterms), and
**purity** (the fraction of texts in their topic's majority category) and **NMI** (scikit-learn's
``normalized_mutual_info_score``) compare that clustering with the categories. Training CPU
seconds (one thread) beside each row.

    OMP_NUM_THREADS=1 python benchmarks/short_texts.py --seeds 0 1 --only "BTM (bitermplus)" \
        --out benchmarks/results/short_texts/btm

(one ``--only`` method per run, as stored in ``benchmarks/results/short_texts/``; GraphBTM's
30 epochs take about 50 CPU s per K and seed, the endpoint form's 100 about 140).
``--docs-per-corpus`` sets GraphBTM's mini-corpus size; ``--model-option`` and
``--train-option`` change the zoo's methods' settings, e.g. ``--model-option dropout=0.2``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from _report import parse_options, write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo import data as zoo_data  # noqa: E402
from zoo import metrics, topics  # noqa: E402
from zoo.data.biterms import BitermSplit, biterm_dataset  # noqa: E402
from zoo.data.fortunes import HOW_TO_GET  # noqa: E402
from zoo.runs import build  # noqa: E402
from zoo.train import TrainConfig, fit  # noqa: E402

WINDOW, DOCS_PER_CORPUS = 30, 3
#: name: (epochs, epochs with --quick, training options beyond the model's defaults, model
#: options beyond its defaults)
METHODS = {
    "GraphBTM": (30, 2, {}, {}),  # BTM's biterm likelihood, topics by online EM (the defaults)
    "GraphBTM (gradient)": (30, 2, {}, {"topic_step": "gradient"}),  # 100 epochs: no better
    "GraphBTM (endpoints)": (100, 2, {}, {"likelihood": "endpoints"}),  # the paper's
    "BTM (bitermplus)": (500, 5, {}, {}),  # Gibbs sweeps
    "ProdLDA": (200, 2, {}, {}),
    "LDA (dirichlet)": (30, 2, {}, {}),
}


def synthetic_fortunes(folder: Path, per_category=60, seed=0) -> Path:
    """Three categories of random short texts in fortune format, for ``--quick``."""
    rng = np.random.default_rng(seed)
    words = {"space": "rocket orbit planet astronaut moon star launch".split(),
             "food": "bread cheese wine dinner cook kitchen soup".split(),
             "law": "judge court lawyer trial jury verdict appeal".split()}
    for name, vocab in words.items():
        texts = [" ".join(rng.choice(vocab, rng.integers(3, 9))) for _ in range(per_category)]
        (folder / name).write_text("\n%\n".join(texts) + "\n")
    return folder


def clustering_scores(assigned: np.ndarray, labels: np.ndarray) -> dict:
    """Purity and NMI of topic assignments ``[D]`` against category labels ``[D]``."""
    from sklearn.metrics import normalized_mutual_info_score

    table = np.zeros((assigned.max() + 1, labels.max() + 1))
    np.add.at(table, (assigned, labels), 1)
    return {"purity": float(table.max(1).sum() / len(labels)),
            "nmi": float(normalized_mutual_info_score(labels, assigned))}


def topic_scores(beta, texts, assigned) -> dict:
    return {"npmi": metrics.npmi(beta, texts, top_n=10).mean,
            "diversity": metrics.topic_diversity(beta, top_k=min(25, len(texts.meta["vocab"]))),
            **clustering_scores(assigned, texts.test.labels),
            "top_words": metrics.top_words(beta, texts.meta["vocab"], 10)[:5]}


def train_zoo(model_name, data, num_topics, epochs, seed, options=None, model_options=None):
    pyro.set_rng_seed(seed)
    model, guide = build(model_name, None, data, {"num_topics": num_topics,
                                                  **(model_options or {})})
    config = TrainConfig(**{**model.default_train_config, **(options or {}), "epochs": epochs,
                            "seed": seed, "device": "cpu", "validate": False,
                            "eval_every": epochs})
    history = fit(model, guide, data, config, progress=False)
    model.eval()
    guide.eval()
    return model, guide, sum(h["cpu_seconds"] for h in history)


@torch.no_grad()
def posterior_means(guide, x) -> np.ndarray:
    """softmax of the encoder's mean ``[D, K]`` for Gaussian guides on the logits."""
    (name,) = guide.heads.keys()
    loc, _ = guide.heads[name](guide.hidden(x))
    return torch.softmax(loc, -1).numpy()


def run_graphbtm(texts, num_topics, epochs, seed, options, model_options=None,
                 docs_per_corpus=DOCS_PER_CORPUS):
    graphs = biterm_dataset(texts, window=WINDOW, docs_per_corpus=docs_per_corpus, seed=0)
    model, guide, cpu = train_zoo("gbtm", graphs, num_topics, epochs, seed, options,
                                  model_options)
    single = BitermSplit(texts.test.tokens, texts.num_features, WINDOW, docs_per_corpus=1)
    single.groups = [np.array([d]) for d in range(len(texts.test.tokens))]  # in order
    theta = np.concatenate([posterior_means(guide, single.batch(torch.arange(s, min(s + 500,
                            len(single))))) for s in range(0, len(single), 500)])
    return {"cpu_seconds": cpu, **topic_scores(topics.topic_word(model), texts,
                                               theta.argmax(1))}


def run_prodlda(texts, num_topics, epochs, seed, options, model_options=None):
    model, guide, cpu = train_zoo("prodlda", texts, num_topics, epochs, seed, options,
                                  model_options)
    theta = posterior_means(guide, texts.test.dense())
    return {"cpu_seconds": cpu, **topic_scores(topics.topic_word(model), texts,
                                               theta.argmax(1))}


def run_lda(texts, num_topics, epochs, seed, options, model_options=None):
    model, guide, cpu = train_zoo("lda", texts, num_topics, epochs, seed, options,
                                  model_options)
    with torch.no_grad():
        x = texts.test.dense()
        logs = {"topic_words": guide.expected_log("topic_words")}
        gamma = model.local_update(x, x.new_ones(len(x), num_topics), logs, 100)
    return {"cpu_seconds": cpu, **topic_scores(topics.topic_word(model, guide), texts,
                                               gamma.argmax(1).numpy())}


def run_btm(texts, num_topics, iterations, seed, options, model_options=None):
    import bitermplus as btm

    vocab = np.array(texts.meta["vocab"])
    train = [t.astype(np.int32) for t in texts.train.tokens]
    biterms = btm.get_biterms(train, win=WINDOW)
    model = btm.BTM(texts.train.counts, vocab, T=num_topics, alpha=50.0 / num_topics,
                    beta=0.01, seed=seed, win=WINDOW)
    start = time.process_time()
    model.fit(biterms, iterations=iterations, verbose=False)
    cpu = time.process_time() - start
    theta = model.transform([t.astype(np.int32) for t in texts.test.tokens], verbose=False)
    theta = np.nan_to_num(np.asarray(theta))  # texts without a biterm have no topic mass
    return {"cpu_seconds": cpu, **topic_scores(np.asarray(model.matrix_topics_words_), texts,
                                               theta.argmax(1))}


RUNNERS = {"GraphBTM": run_graphbtm, "GraphBTM (gradient)": run_graphbtm,
           "GraphBTM (endpoints)": run_graphbtm,
           "BTM (bitermplus)": run_btm, "ProdLDA": run_prodlda, "LDA (dirichlet)": run_lda}


def markdown(results) -> str:
    rows = ["| method | K | seeds | CPU s | NPMI (whole corpus) | diversity | purity | NMI |",
            "|---|---|---|---|---|---|---|---|"]
    for key, runs in results.items():
        name, k = key.rsplit(" K=", 1)
        seeds = sorted(runs)

        def mean(metric, runs=runs, seeds=seeds):
            values = [runs[s][metric] for s in seeds]
            text = f"{statistics.mean(values):.3f}"
            return text if len(values) == 1 else (
                text + " (" + " / ".join(f"{v:.3f}" for v in values) + ")")

        cpu = statistics.mean(runs[s]["cpu_seconds"] for s in seeds)
        rows.append(f"| {name} | {k} | {', '.join(map(str, seeds))} | {cpu:.0f} | "
                    f"{mean('npmi')} | {mean('diversity')} | {mean('purity')} | {mean('nmi')} |")
    return "\n".join(rows)


def selects(option: str, name: str) -> bool:
    """``--only`` matches a method's exact name (case aside) if one has it, else the methods
    whose name contains it: ``--only BTM`` would otherwise also run GraphBTM, ``--only LDA``
    ProdLDA; ``--only bitermplus`` or the exact name picks the library's BTM alone."""
    if any(option.lower() == m.lower() for m in METHODS):
        return option.lower() == name.lower()
    return option.lower() in name.lower()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, nargs="+", default=[20, 40])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", action="append", help="methods whose name contains this")
    parser.add_argument("--epochs", type=int, help="override every method's epochs (sweeps)")
    parser.add_argument("--folder", help="fortune files (default: the fortunes loader's)")
    parser.add_argument("--out", help="folder for results.json and results.md")
    parser.add_argument("--quick", action="store_true", help="a few epochs, to check it runs")
    parser.add_argument("--docs-per-corpus", type=int, default=DOCS_PER_CORPUS,
                        help=f"texts per GraphBTM mini-corpus (default {DOCS_PER_CORPUS}, the "
                             f"paper's)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a model option for the zoo's methods (repeatable), e.g. "
                             "--model-option dropout=0.2")
    parser.add_argument("--train-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a training option for the zoo's methods (repeatable), e.g. "
                             "--train-option lr=0.005")
    args = parser.parse_args(argv)
    if args.docs_per_corpus < 1:
        parser.error(f"--docs-per-corpus must be >= 1, got {args.docs_per_corpus}")
    model_options = parse_options(args.model_option)
    train_options = parse_options(args.train_option)
    torch.set_num_threads(1)
    pyro.settings.set(module_local_params=True)
    if args.quick and args.folder is None:  # a smoke run needs no installed corpus
        args.folder, args.topics = synthetic_fortunes(Path(tempfile.mkdtemp())), [3]
    try:
        texts = zoo_data.load("fortunes", folder=args.folder)
    except ValueError as e:
        print(f"skipped: the fortunes corpus is not available ({e}).\nTo run this benchmark, "
              f"{HOW_TO_GET}.")
        return None
    results = {}
    for name, (epochs, quick_epochs, options, method_options) in METHODS.items():
        if args.only and not any(selects(o, name) for o in args.only):
            continue
        if name.startswith("BTM"):
            try:
                import bitermplus  # noqa: F401
            except ImportError:
                print(f"skipped {name}: bitermplus is not installed (pip install bitermplus)")
                continue
        epochs = quick_epochs if args.quick else (args.epochs or epochs)
        for k in args.topics:
            for seed in args.seeds:
                runner = RUNNERS[name]
                if runner is run_graphbtm:
                    runner = functools.partial(runner, docs_per_corpus=args.docs_per_corpus)
                run = runner(texts, k, epochs, seed, {**options, **train_options},
                             {**method_options, **model_options})
                run["epochs"] = epochs
                results.setdefault(f"{name} K={k}", {})[seed] = run
                shown = {m: round(v, 3) for m, v in run.items() if m != "top_words"}
                print(f"{name} K={k} seed {seed}: {json.dumps(shown)}", file=sys.stderr,
                      flush=True)
    report = {
        "data": f"{texts}; {len(texts.meta['label_names'])} categories; "
                f"{texts.meta['dropped_empty']} empty texts dropped; {texts.meta['split']}",
        "hardware": f"{platform.processor() or platform.machine()}, torch threads "
                    f"{torch.get_num_threads()}, "
                    f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
        "window": WINDOW, "docs_per_corpus": args.docs_per_corpus, "quick": args.quick,
        "model_options": model_options, "train_options": train_options,
        "results": results,
    }
    return write_report(report, markdown(results), args.out)


if __name__ == "__main__":
    main()
