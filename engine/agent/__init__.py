"""The on-machine agent: one stdlib-only file copied to every machine (slipstream_agent.py)."""
