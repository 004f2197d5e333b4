"""``zoo data download | prepare``: fetch a dataset (only when asked) or turn raw text into a
corpus.

::

    zoo data download mnist --out data/mnist
    zoo data prepare docs.txt --vocab-size 2000 --out corpus.npz

``zoo/cli.py`` wires it in with ``cli_data.add_parser(subparsers)``; each action sets ``func``.
"""

from __future__ import annotations

import json


def cmd_download(args):
    from zoo.data.mnist import download_mnist

    print(download_mnist(args.out, log=print))


def document_frequency(text):
    """An int (a number of documents) or a float (a fraction), as CountVectorizer reads them."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def cmd_prepare(args) -> int:
    from zoo.data.text import prepare_corpus

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
    dl.add_argument("--out", required=True)
    dl.set_defaults(func=cmd_download)

    p = actions.add_parser(
        "prepare", help="raw text (one document per line) -> .npz bag-of-words corpus",
        description="Count raw text (one document per line) with scikit-learn's "
        "CountVectorizer and write a .npz corpus (counts, vocabulary, token sequences) that "
        "zoo.data.load reads; prints a JSON summary.",
    )
    p.add_argument("input", help="a UTF-8 text file, one document per line")
    p.add_argument("--out", required=True, help="the .npz corpus to write")
    p.add_argument("--vocab-size", type=int, default=2000, help="most frequent words kept")
    p.add_argument("--stop-words", default="english", choices=["english", "none"],
                   help="scikit-learn's English stop-word list, or none")
    p.add_argument("--min-df", type=document_frequency, default=1,
                   help="ignore words in fewer documents (int) or a smaller fraction (float)")
    p.add_argument("--max-df", type=document_frequency, default=1.0,
                   help="ignore words in more documents (int) or a larger fraction (float)")
    p.set_defaults(func=cmd_prepare)
    return d
