"""torchslim: make trained PyTorch models smaller and faster within an accuracy budget."""

from torchslim._public import load_model
from torchslim._version import __version__
from torchslim.artifacts import load
from torchslim.bench import Metrics, benchmark
from torchslim.core import log as _log  # noqa: F401  (first: quiets torchao's CUDA-extension noise before it loads)
from torchslim.data import DataBundle, load_data
from torchslim.distill import DistillConfig, distill
from torchslim.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    ExportError,
    RefusedError,
    SpecError,
    TorchslimError,
    TrainingError,
    UnsupportedError,
)
from torchslim.export import export
from torchslim.factorize import FactorizeConfig, factorize
from torchslim.performance import Performance
from torchslim.pipeline import Goal, MeasureOptions, RunOptions, optimize
from torchslim.prune import ChannelPruneConfig, GlobalPruneConfig, MagnitudePruneConfig, prune
from torchslim.quantize import (
    CastConfig,
    DynamicInt8Config,
    Int4WeightOnlyConfig,
    QATConfig,
    StaticInt8Config,
    WeightOnlyInt8Config,
    quantize,
)
from torchslim.share import ShareConfig, save_tslim, share
from torchslim.train import TrainConfig, fit
from torchslim.zoo import create_model, list_models

# One verb per technique (STYLE.md): ``torchslim.prune(model, ChannelPruneConfig(...))``.
# The verbs shadow their subpackages' attribute names on this module; ``from torchslim.prune
# import ...`` still imports the subpackage.

__all__ = [
    "ArtifactError",
    "CastConfig",
    "ChannelPruneConfig",
    "ConfigError",
    "DataError",
    "DistillConfig",
    "DynamicInt8Config",
    "ExportError",
    "FactorizeConfig",
    "GlobalPruneConfig",
    "Goal",
    "Int4WeightOnlyConfig",
    "MagnitudePruneConfig",
    "MeasureOptions",
    "DataBundle",
    "Metrics",
    "Performance",
    "QATConfig",
    "RefusedError",
    "RunOptions",
    "ShareConfig",
    "SpecError",
    "StaticInt8Config",
    "TorchslimError",
    "TrainConfig",
    "TrainingError",
    "UnsupportedError",
    "WeightOnlyInt8Config",
    "__version__",
    "benchmark",
    "create_model",
    "distill",
    "export",
    "factorize",
    "fit",
    "list_models",
    "load",
    "load_data",
    "load_model",
    "optimize",
    "prune",
    "quantize",
    "save_tslim",
    "share",
]


def __dir__() -> list[str]:
    # The curated API only: without this, dir() also lists every subpackage imported above
    # (artifacts, bench, ...) and private modules.
    return sorted(__all__)


from torchslim.core.registry import load_plugins as _load_plugins  # noqa: E402
from torchslim.errors import ConfigError as _ConfigError  # noqa: E402

try:
    _load_plugins()
except _ConfigError:
    # A bad TORCHSLIM_PLUGINS must not make ``import torchslim`` itself fail: the command line
    # imports this package before its error handling runs, so it exited 1 with a traceback. The
    # CLI loads the plug-ins again and exits 2 with the message; in a library, a lookup of a name
    # the plug-in would have registered names the bad module (core.registry).
    pass
