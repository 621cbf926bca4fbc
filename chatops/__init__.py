"""chatops front door (built in a later issue)."""
