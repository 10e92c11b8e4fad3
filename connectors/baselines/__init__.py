"""Baselines token pools is measured against (issue 12): conventional limiters, as gateways ship them."""
