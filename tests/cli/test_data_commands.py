"""``zoo data prepare``: raw text to a .npz corpus that the loaders read."""

import argparse
import json

from zoo.cli_data import add_parser
from zoo.data.text_formats import read_npz


def test_cli_prepare(tmp_path, capsys):
    (tmp_path / "d.txt").write_text("alpha beta beta\nbeta gamma\nalpha gamma delta\n")
    parser = argparse.ArgumentParser(prog="zoo")
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "c.npz"
    args = parser.parse_args(["data", "prepare", str(tmp_path / "d.txt"), "--vocab-size", "3",
                              "--out", str(out), "--min-df", "2", "--stop-words", "none"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["vocab_size"] == 3 and summary["documents"] == 3 and summary["min_df"] == 2
    assert read_npz(out).vocab == ["alpha", "beta", "gamma"]
