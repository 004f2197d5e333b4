"""The GCN encoder of GraphBTM (guides/gcn_normal.py): the renormalized adjacency of a batch of
biterm graphs, and the guide fitting graph-input models only."""

import torch

from guides.gcn_normal import GCNNormalGuide, graph_batch
from zoo.registry import get_guide, get_model, list_guides


def test_gcn_adjacency_is_the_renormalized_one():
    a = torch.tensor([[[0.0, 2.0, 0.0], [2.0, 1.0, 1.0], [0.0, 1.0, 0.0]]])
    adjacency, features, active = graph_batch(a.to_sparse())
    a_tilde = a[0] + torch.eye(3)
    d = a_tilde.sum(-1).rsqrt()
    torch.testing.assert_close(adjacency.to_dense(), d[:, None] * a_tilde * d[None, :])
    torch.testing.assert_close(features.to_dense(), torch.log1p(a[0]))
    assert active.tolist() == [0, 1, 2]


def test_only_the_nodes_with_an_edge_are_numbered():
    a = torch.zeros(2, 5, 5)
    a[0, 1, 3] = a[0, 3, 1] = 2.0
    a[1, 4, 4] = 1.0
    _, features, active = graph_batch(a.to_sparse())
    assert active.tolist() == [1, 3, 9]  # b * V + i
    torch.testing.assert_close(features.to_dense(),
                               torch.log1p(a.reshape(10, 5)[active]))


def test_the_encoder_on_present_words_is_the_gcn_over_every_node():
    """The layers run on the nodes with an edge only; in eval mode (no dropout) that gives the
    two-layer residual GCN of the paper over all B V nodes, absent words included."""
    model = get_model("gbtm", input_dim=30, num_topics=4)
    guide = get_guide("gcn_normal", model, gcn_dim=8, hidden_dims=(6,)).eval()
    with torch.no_grad():
        for layer in (guide.gcn1, guide.gcn2, guide.gcn3):
            layer.bias.normal_()  # non-zero biases: absent words' nodes get a non-zero score
    x = model.example_batch(4)
    dense = x.to_dense()
    b, v = dense.shape[:2]
    a_tilde = torch.block_diag(*dense) + torch.eye(b * v)
    d = a_tilde.sum(-1).rsqrt()
    a_hat = d[:, None] * a_tilde * d[None, :]
    features = torch.log1p(dense.reshape(b * v, v))
    h1 = torch.relu(a_hat @ guide.gcn1.linear(features) + guide.gcn1.bias)
    h2 = torch.relu(a_hat @ guide.gcn2.linear(h1) + guide.gcn2.bias) + h1
    g = (a_hat @ guide.gcn3.linear(h2) + guide.gcn3.bias).reshape(b, v)
    with torch.no_grad():
        torch.testing.assert_close(guide.hidden(x), guide.trunk(g))


def test_gcn_guide_fits_graph_models_only():
    gbtm = get_model("gbtm", input_dim=30, num_topics=4)
    assert "gcn_normal" in list_guides(gbtm)
    assert "ctf" not in list_guides(gbtm)
    assert "does not declare graph_input" in GCNNormalGuide.why_not(get_model("ctm"))
    guide = get_guide("gcn_normal", gbtm)
    x = gbtm.example_batch(5)
    assert guide(x)["doc_logits"].shape == (5, 4)
