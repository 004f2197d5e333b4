"""pyro-vi-zoo: neural variational inference on Pyro: models (:mod:`zoo.models`), swappable
guides (the top-level :mod:`guides` package), objectives and estimators built on custom effect
handlers (:mod:`zoo.infer`, :mod:`zoo.poutine`), and the engine and command line that train and
evaluate them (:mod:`zoo.train`, :mod:`zoo.cli`). Models and guides register themselves; see
:mod:`zoo.registry`."""

__version__ = "0.3.0"
