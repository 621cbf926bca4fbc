"""Inventory and drift: what the clouds hold against what the runs' Terraform states say.

Owns listing, per cloud type, the instances that carry this service's labels
(:mod:`~engine.inventory.listers`: ``aws`` through boto3, ``local`` from this host's
processes; other types say they are not supported yet), reading the instances out of each
run's Terraform state (:mod:`~engine.inventory.states`), and the findings that compare
them (:mod:`~engine.inventory.inventory`): orphans (in a cloud, in no run's state),
ghosts (in a state, gone from the cloud) and drift (:mod:`~engine.inventory.drift`:
Terraform's refresh of a run's roots, and on ``local`` an instance whose process died).

Sits between ``runs`` and the service facade: imports ``recipes`` (the clouds
configuration), ``terraform``, ``store``, ``runs`` (run folders, the ``local``
launcher), ``providers_map`` and the base modules; boto3 only inside the ``aws`` lister.
"""
