"""The GCN encoder of GraphBTM (guides/gcn_normal.py): the renormalized adjacency of a batch of
biterm graphs, and the guide fitting graph-input models only."""

import torch

from guides.gcn_normal import GCNNormalGuide, graph_batch
from zoo.registry import get_guide, get_model, list_guides


def test_gcn_adjacency_is_the_renormalized_one():
    a = torch.tensor([[[0.0, 2.0, 0.0], [2.0, 1.0, 1.0], [0.0, 1.0, 0.0]]])
    adjacency, features = graph_batch(a.to_sparse())
    a_tilde = a[0] + torch.eye(3)
    d = a_tilde.sum(-1).rsqrt()
    torch.testing.assert_close(adjacency.to_dense(), d[:, None] * a_tilde * d[None, :])
    torch.testing.assert_close(features.to_dense(), torch.log1p(a[0]))


def test_gcn_guide_fits_graph_models_only():
    gbtm = get_model("gbtm", input_dim=30, num_topics=4)
    assert "gcn_normal" in list_guides(gbtm)
    assert "ctf" not in list_guides(gbtm)
    assert "does not declare graph_input" in GCNNormalGuide.why_not(get_model("ctm"))
    guide = get_guide("gcn_normal", gbtm)
    x = gbtm.example_batch(5)
    assert guide(x)["doc_logits"].shape == (5, 4)
