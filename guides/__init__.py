"""Guide families. Each is generic over what it approximates and registers itself; importing
this package registers them all."""

from guides import diagonal_normal, householder  # noqa: F401
from guides.diagonal_normal import DiagonalNormalGuide  # noqa: F401
from guides.householder import HouseholderGuide, HouseholderNormal  # noqa: F401
