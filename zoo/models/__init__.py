"""Models of the zoo. Importing this package registers every model (explicit imports, as timm's
``models/__init__.py`` does, so a reader sees the whole list)."""

from zoo.models import vae  # noqa: F401
from zoo.models.base import LatentSite, ZooModel, data_plate  # noqa: F401
from zoo.models import ppca  # noqa
from zoo.models import dlgm  # noqa: F401
from zoo.models import ctm  # noqa: F401,E402
from zoo.models import lda, nvdm, prodlda  # noqa: F401,E402  (topic models, issue 3)
from zoo.models import mixture  # noqa
