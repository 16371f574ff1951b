"""Files in and out: reading inputs, writing videos, output names, sidecars, and the trust
boundary for anything read from a file (DESIGN section 7)."""
