"""The chat-ops front door: ``/slipstream`` in Slack (DESIGN sections 9 and 11).

- :mod:`chatops.grammar`: the command grammar every text front end shares (no Slack);
- :mod:`chatops.recipes`: finding a deployment by the name typed;
- :mod:`chatops.commands`: running a command for an actor, as a typed result;
- :mod:`chatops.blocks`: rendering results and runs as Block Kit;
- :mod:`chatops.identity`: Slack users → product users;
- :mod:`chatops.slack`: the Web API calls, their failures sorted;
- :mod:`chatops.handlers`, :mod:`chatops.app`: Slack's requests, and the Bolt app;
- :mod:`chatops.watcher`: runs' progress posted as threads, off the runs' path.

Runs started elsewhere reach Slack through their origin: a front door (the GitOps one)
that stores ``{"notify": {"slack": {"channel": "C0123"}}}`` in a run's ``origin`` gets its
parent message and thread in that channel, Approve/Cancel buttons included for a run held
for an approval (see :func:`chatops.watcher.slack_target`).
"""
