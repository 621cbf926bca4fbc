"""The runtime parameters the engine sets for every instance (DESIGN section 4), with
SlipStream's names (``cloudservice``, ``node_instance_name``, ``service-offer``,
``image.id``, a per-instance ``multiplicity``): recipes may map inputs to them, and the
coordination serves them.

Example:
    >>> "hostname" in INSTANCE_BUILTINS, SETTABLE_BUILTINS
    (True, ('statecustom',))
"""

from __future__ import annotations

INSTANCE_BUILTINS = (
    "hostname",
    "instanceid",
    "cloud",
    "cloudservice",
    "nodename",
    "node_instance_name",
    "id",
    "multiplicity",
    "service-offer",
    "image.id",
    "statecustom",
    "scale.state",
)
#: The built-ins an instance may set itself.
SETTABLE_BUILTINS = ("statecustom",)
