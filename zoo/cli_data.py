"""``zoo data download | prepare``: fetch a dataset (only when asked) or turn raw text into a
corpus.

::

    zoo data download mnist --out data/mnist
    zoo data prepare docs.txt --vocab-size 2000 --out corpus.npz

``zoo/cli.py`` wires it in with ``cli_data.add_parser(subparsers)``; each action sets ``func``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo import options, runs


def cmd_download(args):
    """``zoo data download mnist``: fetch MNIST into ``--out`` (the only command that downloads)."""
    from zoo.data.mnist import download_mnist

    options.check_arguments(args)
    runs.check_writable(args.out)
    print(download_mnist(args.out, log=print))


def document_frequency(text):
    """An int (a number of documents, >= 1) or a float (a fraction in (0, 1]), as
    CountVectorizer reads them."""
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        value = None
    if value is None or (isinstance(value, int) and value < 1) or (
            isinstance(value, float) and not 0 < value <= 1):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a number of documents (an integer >= 1) nor a fraction of "
            "them (a number in (0, 1])")
    return value


def cmd_prepare(args) -> int:
    """``zoo data prepare FILE``: turn a text file (one document per line) into a ``.npz`` corpus
    with its vocabulary (:func:`zoo.data.text.prepare_corpus`)."""
    from zoo.data.text import prepare_corpus

    options.check_arguments(args)
    source = Path(args.input)
    if not source.exists():
        raise ValueError(f"{source}: no such file (`zoo data prepare` reads a UTF-8 text file, "
                         "one document per line).")
    if source.is_dir():
        raise ValueError(f"{source}: a folder; `zoo data prepare` reads a UTF-8 text file, one "
                         "document per line.")
    if not args.out.endswith(".npz"):
        raise ValueError(f"--out {args.out}: the corpus is a .npz file (zoo.data.load reads it "
                         "by that suffix); name it CORPUS.npz.")
    runs.check_writable(Path(args.out).parent)
    stop_words = None if args.stop_words == "none" else args.stop_words
    summary = prepare_corpus(args.input, args.out, args.vocab_size, stop_words, args.min_df,
                             args.max_df)
    print(json.dumps(summary, indent=2))
    return 0


def add_parser(subparsers):
    """Add ``data`` with its ``download`` and ``prepare`` actions to the ``zoo`` subparsers."""
    d = subparsers.add_parser("data", help="fetch or prepare data sets")
    actions = d.add_subparsers(dest="data_command", required=True)
    dl = actions.add_parser("download", help="download a data set (only when asked)")
    dl.add_argument("dataset", choices=["mnist"])
    options.add_option(dl, "--out", required=True, check=options.folder,
                       help="folder for the four IDX files")
    dl.set_defaults(func=cmd_download)

    p = actions.add_parser(
        "prepare", help="raw text (one document per line) -> .npz bag-of-words corpus",
        description="Count raw text (one document per line) with scikit-learn's "
        "CountVectorizer and write a .npz corpus (counts, vocabulary, token sequences) that "
        "zoo.data.load reads; prints a JSON summary.",
    )
    p.add_argument("input", help="a UTF-8 text file, one document per line")
    options.add_option(p, "--out", required=True, check=options.not_a_folder,
                       help="the .npz corpus to write")
    options.add_option(p, "--vocab-size", type=int, default=2000, check=options.at_least(1),
                       help="most frequent words kept (default 2000)")
    p.add_argument("--stop-words", default="english", choices=["english", "none"],
                   help="scikit-learn's English stop-word list, or none")
    p.add_argument("--min-df", type=document_frequency, default=1,
                   help="ignore words in fewer documents (int) or a smaller fraction (float)")
    p.add_argument("--max-df", type=document_frequency, default=1.0,
                   help="ignore words in more documents (int) or a larger fraction (float)")
    p.set_defaults(func=cmd_prepare)
    return d
