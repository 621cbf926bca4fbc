"""The on-machine agent: one stdlib-only file copied to every machine.

Owns ``slipstream_agent.py`` (the daemon and the ``ss-*`` commands); imports nothing of the
project, and this package only says where the file is.

Example:
    >>> AGENT_FILE.name
    'slipstream_agent.py'
"""

from pathlib import Path

AGENT_FILE = Path(__file__).resolve().parent / "slipstream_agent.py"
