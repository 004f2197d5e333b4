r"""Correlated topic models and GraphBTM against ProdLDA, in one run.

**CTM** (``zoo.models.ctm``) on NVDM's 20 Newsgroups bag of words (``../shared/data/20news``:
7,505 documents, 2,000 words), split 80/20 at random with seed 0 (``zoo.data.load("20news")``),
K = 50, with each guide: ``diagonal_normal`` (the independence baseline), ``householder``
(Householder flow, NVCTM's flow) and ``ctf`` (centralized transformation flow). **ProdLDA** is
the peer, trained in the same run. Every model runs at its registry defaults
(``default_guide_options``, ``default_train_config``, constructor defaults: for CTM the
product-of-experts decoder with a learned background and a prior held at the Laplace
approximation for the first 50 epochs, then learned: its topic correlations and one common scale,
every topic keeping the same mean and variance, ``prior_form="correlation"``) with
``TraceMeanField_ELBO`` (the KL is analytic for all three guides against CTM's full-covariance
prior: ``guides/ctf.py`` registers it), for the **same number of epochs** (100 by default,
``--epochs``); the wall time of each is reported beside it. Topics of the mixture decoder, if
asked for, are seeded by k-means++ (:meth:`CTM.init_topics`).

**GraphBTM** needs word order, and no 20 Newsgroups file here has it (the ``.feat`` bag of words
and the bundled Reuters ``.ldac`` lose it; we do not invent an order). It runs on the one
raw-text corpus available offline: the paragraphs (8 words or more) of the Python reference
documentation that CPython ships as ``pydoc_data.topics`` (79 help topics, about 1,800
paragraphs of 35 words: short texts), read by ``zoo.data.load(".txt")`` (scikit-learn's
``CountVectorizer``, English stop words, vocabulary 2,000), split 80/20 with seed 0, mini-corpora
of 3 paragraphs, window 30, K = 20 (a small corpus). ProdLDA on the same paragraphs is its peer.

Reported: training wall time; held-out perplexity (corpus form
:math:`\exp(-\sum_d b_d/\sum_d N_d)`, multinomial coefficient removed, :mod:`zoo.topics`; for
GraphBTM, whose data points are biterm graphs, the held-out ELBO per mini-corpus instead); NPMI of
the top 10 words against the whole corpus (document co-occurrence; paragraphs for the Python
corpus); diversity of the top 25. For CTM + ``ctf``, the most correlated topic pairs.

    OMP_NUM_THREADS=1 python benchmarks/correlated_topics.py --only "CTM (" --only ProdLDA \
        --out benchmarks/results/correlated_topics
    # other training seeds (the split stays seed 0): --seed 1 --out .../seed1, and so on; then
    python benchmarks/correlated_topics.py --mean-of benchmarks/results/correlated_topics \
        benchmarks/results/correlated_topics/seed1 benchmarks/results/correlated_topics/seed2 \
        --out benchmarks/results/correlated_topics  # summary.md: the means over seeds

The NPMI of one run moves by a few hundredths from one epoch to the next and from one seed to
the next, for ProdLDA as for the CTM: compare means over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch
from _report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo import data as zoo_data  # noqa: E402
from zoo import metrics, topics  # noqa: E402
from zoo.data.biterms import biterm_dataset  # noqa: E402
from zoo.evaluation import heldout_elbo  # noqa: E402
from zoo.models.ctm import top_correlated_pairs, topic_correlations  # noqa: E402
from zoo.runs import build  # noqa: E402
from zoo.train import TrainConfig, fit  # noqa: E402

K = 50
EPOCHS = 100  # the same number of epochs for every 20 Newsgroups row (2 with --quick)
METHODS = {  # name: (model, guide); each at its registry defaults
    "CTM (diagonal_normal)": ("ctm", "diagonal_normal"),
    "CTM (householder)": ("ctm", "householder"),
    "CTM (ctf)": ("ctm", "ctf"),
    "ProdLDA": ("prodlda", None),
}


def train(model_name, guide_name, dataset, epochs, num_topics, seed=0):
    """Build at the registry defaults (model config, guide options, optimizer settings), seed
    the mixture decoder's topics if asked, train; returns (model, guide, seconds). Every model
    is trained on ``TraceMeanField_ELBO`` unless its defaults name another objective (AVITM's
    analytic KL)."""
    pyro.set_rng_seed(seed)
    model, guide = build(model_name, guide_name, dataset, {"num_topics": num_topics})
    settings = {"objective": "meanfield", **model.default_train_config}
    if model.config.get("decoder") == "mixture":  # CTM with Blei & Lafferty's decoder
        counts = torch.as_tensor(dataset.train.counts.toarray(), dtype=torch.float32)
        model.init_topics(counts, torch.Generator().manual_seed(seed))
    # validate=False: as `zoo train` trains (Pyro's checks cost 10-20 % of a step)
    config = TrainConfig(**{**settings, "epochs": epochs, "seed": seed, "device": "cpu",
                            "validate": False})
    start = time.perf_counter()
    fit(model, guide, dataset, config, progress=False)
    return model, guide, time.perf_counter() - start


def run_topic_model(dataset, model_name, guide_name, epochs, num_topics=K, seed=0):
    model, guide, seconds = train(model_name, guide_name, dataset, epochs, num_topics, seed)
    pyro.set_rng_seed(0)
    summary = topics.topics_summary(model, guide, dataset)
    out = {k: summary[k] for k in ("perplexity", "npmi", "diversity")}
    out.update(seconds=seconds, epochs=epochs, model_config=model.config,
               guide_options=guide.options)
    out["top_words"] = summary.get("top_words", [])[:5]
    if model_name == "ctm":
        words = summary.get("top_words")
        out["top_correlated_pairs"] = [
            {"topics": [i, j], "r": round(r, 3),
             "words": [" ".join(words[i][:4]), " ".join(words[j][:4])] if words else None}
            for i, j, r in top_correlated_pairs(topic_correlations(model), n=5)]
    return out


def python_docs_corpus(folder) -> Path:
    """The paragraphs (>= 8 words) of CPython's ``pydoc_data.topics``, one per line."""
    from pydoc_data.topics import topics as help_topics

    paragraphs = [" ".join(p.split()) for text in help_topics.values()
                  for p in re.split(r"\n\s*\n", text) if len(p.split()) >= 8]
    path = Path(folder) / "python_docs.txt"
    path.write_text("\n".join(paragraphs) + "\n")
    return path


def run_graphbtm(epochs, quick, num_topics=20):
    with tempfile.TemporaryDirectory() as folder:
        texts = zoo_data.load(python_docs_corpus(folder), vocab_size=2000, test_fraction=0.2,
                              seed=0)
    graphs = biterm_dataset(texts, window=30, docs_per_corpus=3, seed=0)
    results = {}
    pyro.set_rng_seed(0)
    model, guide = build("gbtm", None, graphs, {"num_topics": num_topics},
                         {"dropout": 0.6})
    config = TrainConfig(lr=5e-3, betas=(0.99, 0.999), batch_size=64, epochs=epochs, seed=0,
                         device="cpu")
    start = time.perf_counter()
    fit(model, guide, graphs, config, progress=False)
    seconds = time.perf_counter() - start
    beta = topics.topic_word(model)
    results["GraphBTM (python docs)"] = {
        "seconds": seconds, "epochs": epochs,
        "heldout_elbo_per_minicorpus": heldout_elbo(model, guide, graphs.test),
        "npmi": metrics.npmi(beta, texts, top_n=10).mean,
        "diversity": metrics.topic_diversity(beta, top_k=25),
        "top_words": metrics.top_words(beta, texts.meta["vocab"], 10)[:5],
    }
    peer = run_topic_model(texts, "prodlda", None, 2 if quick else 100, num_topics)
    peer.pop("top_correlated_pairs", None)
    results["ProdLDA (python docs)"] = peer
    corpus = (f"{len(texts.train) + len(texts.test)} paragraphs of pydoc_data.topics, "
              f"V = {texts.num_features}, K = {num_topics}")
    return results, corpus


def markdown(results) -> str:
    rows = ["| method | data | epochs | train s | held-out perplexity | NPMI (whole corpus) | "
            "diversity |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        data = "python docs" if "python docs" in name else "20news"
        perplexity = (f"{r['perplexity']:.0f}" if "perplexity" in r else
                      f"(ELBO {r['heldout_elbo_per_minicorpus']:.0f} / mini-corpus)")
        rows.append(f"| {name} | {data} | {r.get('epochs', '')} | {r['seconds']:.0f} | "
                    f"{perplexity} | {r['npmi']:.3f} | {r['diversity']:.2f} |")
    return "\n".join(rows)


def seed_means(folders) -> tuple[dict, str]:
    """Mean perplexity, NPMI, diversity and seconds of each 20 Newsgroups method over the
    ``results.json`` of ``folders`` (one per training seed); methods missing from a folder are
    left out. Returns (JSON, markdown)."""
    reports = [json.loads((Path(f) / "results.json").read_text()) for f in folders]
    names = [n for n in reports[0]["results"] if "python docs" not in n
             and all(n in r["results"] for r in reports)]
    keys = ("perplexity", "npmi", "diversity", "seconds")
    means = {}
    for name in names:
        rows = [r["results"][name] for r in reports]
        means[name] = {k: sum(row[k] for row in rows) / len(rows) for k in keys}
        means[name]["npmi_per_seed"] = [row["npmi"] for row in rows]
    table = ["| method | seeds | train s | held-out perplexity | NPMI (whole corpus) | "
             "NPMI per seed | diversity |", "|---|---|---|---|---|---|---|"]
    for name, m in means.items():
        per_seed = " / ".join(f"{v:.3f}" for v in m["npmi_per_seed"])
        table.append(f"| {name} | {len(folders)} | {m['seconds']:.0f} | {m['perplexity']:.0f} | "
                     f"{m['npmi']:.3f} | {per_seed} | {m['diversity']:.2f} |")
    return {"folders": [str(f) for f in folders], "means": means}, "\n".join(table)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs, to check it runs")
    parser.add_argument("--only", action="append", help="run only these methods (repeatable)")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help=f"epochs for every 20 Newsgroups model (default {EPOCHS})")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed of the 20 Newsgroups models (the split stays seed 0)")
    parser.add_argument("--out", help="folder for results.json and results.md")
    parser.add_argument("--mean-of", nargs="+", metavar="FOLDER",
                        help="train nothing: average the results.json of these folders (one per "
                             "seed) into --out/summary.json and summary.md")
    args = parser.parse_args(argv)
    if args.mean_of:
        summary, table = seed_means(args.mean_of)
        print(table)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            (Path(args.out) / "summary.md").write_text(table + "\n")
        return summary
    torch.set_num_threads(1)
    pyro.settings.set(module_local_params=True)
    results, notes = {}, {}
    try:
        dataset = zoo_data.load("20news", test_fraction=0.2, seed=0)
    except ValueError as e:
        print(f"skipped the 20 Newsgroups rows: 20news is not available ({e})", file=sys.stderr)
        dataset = None
    wanted = lambda name: not args.only or any(o.lower() in name.lower() for o in args.only)  # noqa: E731
    if dataset is not None:
        notes["20news"] = f"{dataset}; 80/20 split seed 0; K = {K}"
        epochs = 2 if args.quick else args.epochs
        notes["20news"] += f"; {epochs} epochs for every model; training seed {args.seed}"
        for name, (model_name, guide_name) in METHODS.items():
            if wanted(name):
                results[name] = run_topic_model(dataset, model_name, guide_name, epochs,
                                                seed=args.seed)
                print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k not in ('top_words', 'top_correlated_pairs')})}", file=sys.stderr)  # noqa: E501
    if wanted("GraphBTM"):
        graph_results, notes["python docs"] = run_graphbtm(2 if args.quick else 20, args.quick)
        results.update(graph_results)
    report = {
        "data": notes, "hardware": f"{platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
        "quick": args.quick, "results": results,
    }
    return write_report(report, markdown(results), args.out)


if __name__ == "__main__":
    main()
