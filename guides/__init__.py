"""Guide families. Each is generic over what it approximates and registers itself; importing
this package registers them all."""

from guides import diagonal_normal, householder  # noqa: F401
from guides.diagonal_normal import DiagonalNormalGuide  # noqa: F401
from guides.householder import HouseholderGuide, HouseholderNormal  # noqa: F401
from guides import low_rank_normal  # noqa: F401
from guides import ctf  # noqa: F401,E402  (centralized transformation flow; CTM)
from guides import dirichlet, logistic_normal  # noqa: F401,E402  (simplex guides, issue 3)
from guides import categorical  # noqa: F401,E402  (discrete local latents, issue 4)
