"""Baselines token pools is measured against: conventional limiters, as gateways ship them."""
