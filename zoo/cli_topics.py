r"""``zoo topics RUN``: print the topics of a trained topic model, most probable words first.

::

    zoo topics runs/lda                      # one line per topic: "  0  word word word ..."
    zoo topics runs/prodlda --format json    # [["word", "word", ...], ...]
    zoo topics runs/lda --num-words 20

The topics are :func:`zoo.topics.topic_word`: LDA's posterior-mean topics (read from the guide),
ProdLDA's per-topic decoder distributions, NVDM's per-dimension word weights. The words come from
the vocabulary of the run's dataset; without one the word ids are printed.

``zoo/cli.py`` wires it in with ``cli_topics.add_parser(subparsers)``; the parser sets
``func``, so ``main`` dispatches to :func:`cmd_topics`.
"""

from __future__ import annotations

import argparse
import json
import sys

from zoo import metrics, options, runs, topics


def topic_words(run_dir, num_words: int = 10) -> list[list[str]]:
    """Each topic's ``num_words`` most probable words (ids as strings without a vocabulary)."""
    model, guide, dataset, _, _ = runs.load_run(run_dir)
    if not model.topic_model:
        raise ValueError(f"{run_dir}: model '{model.registry_name}' is not a topic model; "
                         "`zoo topics` reads runs of lda, prodlda, nvdm, ctm or gbtm.")
    beta = topics.topic_word(model, guide)  # [K, V]
    num_words = min(num_words, beta.shape[1])
    vocab = dataset.meta.get("vocab") or [str(i) for i in range(beta.shape[1])]
    if len(vocab) != beta.shape[1]:
        raise ValueError(f"{run_dir}: the dataset's vocabulary has {len(vocab)} words but the "
                         f"model has {beta.shape[1]}; was the run trained on other data?")
    return metrics.top_words(beta, vocab, num_words)


def topic_correlations(run_dir, num_pairs: int = 10) -> dict:
    """CTM's learned topic correlations: the ``[K, K]`` matrix and its strongest pairs."""
    model, _, _, _, _ = runs.load_run(run_dir)
    corr = model.topic_correlations()
    if corr is None:
        raise ValueError(f"{run_dir}: model '{model.registry_name}' learns no topic "
                         "correlations; `--correlations` reads runs of ctm.")
    from zoo.models.ctm import top_correlated_pairs

    return {"matrix": corr.tolist(), "top_pairs": top_correlated_pairs(corr, num_pairs)}


def cmd_topics(args) -> list[list[str]]:
    """``zoo topics RUN``: the top words of every topic of a topic-model run (with
    ``--correlations``, the learned topic correlations too)."""
    try:
        options.check_arguments(args)
        words = topic_words(args.run, args.num_words)
        corr = topic_correlations(args.run) if args.correlations else None
    except ValueError as e:
        sys.exit(f"error: {e}")
    if args.format == "json":
        print(json.dumps(words if corr is None else {"topics": words, "correlations": corr}))
    else:
        width = len(str(len(words) - 1))
        for k, row in enumerate(words):
            print(f"{k:>{width}}  {' '.join(row)}")
        if corr is not None:
            print("\nmost correlated topic pairs (r, then each topic's top 3 words):")
            for i, j, r in corr["top_pairs"]:
                print(f"{r:+.2f}  {i:>{width}} ({' '.join(words[i][:3])})  "
                      f"{j:>{width}} ({' '.join(words[j][:3])})")
    return words


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``topics`` to the ``zoo`` command's subparsers."""
    p = subparsers.add_parser("topics", help="top words of each topic of a trained topic model")
    p.add_argument("run", help="run folder written by `zoo train`")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: one line per topic; json: a list of lists of words")
    options.add_option(p, "--num-words", type=int, default=10, check=options.at_least(1),
                       help="words per topic (default 10)")
    p.add_argument("--correlations", action="store_true",
                   help="also the learned topic correlations (ctm); with --format json the output "
                        "becomes {\"topics\": [...], \"correlations\": {matrix, top_pairs}}")
    p.set_defaults(func=cmd_topics)
    return p
