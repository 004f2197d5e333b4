"""Models of the zoo. Importing this package registers every model (explicit imports, as timm's
``models/__init__.py`` does, so a reader sees the whole list)."""

from zoo.models import (  # noqa: F401
    ctm,  # correlated topic model (Blei & Lafferty 2006; NVCTM)
    dlgm,  # deep latent Gaussian model (Rezende et al. 2014)
    gbtm,  # GraphBTM, biterm topic model with a GCN encoder (Zhu et al. 2018)
    lda,  # latent Dirichlet allocation (Blei et al. 2003)
    mixture,  # Gaussian mixture with a discrete latent (score-function test bed)
    nvdm,  # neural variational document model (Miao et al. 2016)
    ppca,  # probabilistic PCA: exact evidence and posterior
    prodlda,  # ProdLDA / AVITM (Srivastava & Sutton 2017)
    vae,  # variational autoencoder (Kingma & Welling 2013)
)
from zoo.models.base import LatentSite, ZooModel, data_plate  # noqa: F401
