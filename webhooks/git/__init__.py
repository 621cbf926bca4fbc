"""Git front door: webhook deliveries (GitHub, GitLab, Gitea/Forgejo), polling, and the
commit statuses and pull request comments sent back (see :mod:`engine.gitops`)."""
