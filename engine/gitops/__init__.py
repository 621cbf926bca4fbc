"""GitOps: repositories whose ``slipstream.yaml`` says which deployments to keep running.

- :mod:`~engine.gitops.declarations`: ``slipstream.yaml``, its JSON Schema, located errors;
- :mod:`~engine.gitops.registry`: repositories, deliveries and declared runs in the store;
- :mod:`~engine.gitops.git`: the service's clones (plain ``git``);
- :mod:`~engine.gitops.reconcile`: push → reconcile, and the swap of old and new runs;
- :mod:`~engine.gitops.plans`: what a pull request would change, and its rendering.

Above the service facade (it calls :class:`~engine.service.Service` like any front door)
and below the front doors that feed it (webhooks, polling, the CLI).
"""
