"""Policy nets: the registry and every registered family.

Importing this package registers the tiny family (``bc.nets.tiny``), the Nature family
(``bc.nets.nature``) and, when it is
installed, the classic deep nets (``bc.nets.classic``), so ``NETS`` lists every net a
``--net`` flag or a checkpoint can name.
"""

import importlib
import importlib.util

# registration order is the order of NETS (--help, docs/nets.md): the tiny family first
from bc.nets import tiny  # noqa: F401  (registers the tiny family)

# isort: split
from bc.nets import nature  # noqa: F401  (registers the Nature family)
from bc.nets.registry import NETS, NetEntry, NetSpec, build_net, get_net_entry, register_net
from bc.nets.view import VIEWS, set_view, views_not_in

# The classic nets live in their own package that may not be there yet; an installed but
# broken one must still fail loudly, so only its absence is tolerated.
if importlib.util.find_spec("bc.nets.classic") is not None:
    importlib.import_module("bc.nets.classic")

__all__ = [
    "NETS", "NetEntry", "NetSpec", "VIEWS", "build_net", "get_net_entry", "register_net",
    "set_view", "views_not_in",
]  # fmt: skip
