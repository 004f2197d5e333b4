"""Models of the zoo. Importing this package registers every model (explicit imports, as timm's
``models/__init__.py`` does, so a reader sees the whole list)."""

from zoo.models import vae  # noqa: F401
from zoo.models.base import LatentSite, ZooModel, data_plate  # noqa: F401
