"""Guide families. Each is generic over what it approximates and registers itself; importing
this package registers them all."""

from guides import (  # noqa: F401
    categorical,  # discrete local latents (enumerable or score function)
    chain_normal,  # bottom-up chain q(z_1|x) q(z_2|z_1) for layered models (DLGM)
    ctf,  # centralized transformation flow: N(U mu, U diag(sigma^2) U^T)
    diagonal_normal,  # amortized diagonal Gaussian (the VAE encoder)
    dirichlet,  # amortized Dirichlet for simplex latents, mean-field Dirichlet for globals
    gcn_normal,  # graph convolutional encoder of biterm graphs (GraphBTM)
    householder,  # diagonal Gaussian rotated by amortized Householder reflections
    logistic_normal,  # Gaussian mapped to the simplex by a bijection with its Jacobian
    low_rank_normal,  # diagonal plus rank-r covariance (Rezende et al.'s recognition model)
)
from guides.diagonal_normal import DiagonalNormalGuide  # noqa: F401
from guides.householder import HouseholderGuide, HouseholderNormal  # noqa: F401
