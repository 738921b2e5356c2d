"""Risk management: the risk register and its periodic review."""
