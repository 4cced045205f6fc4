"""Data: shards (validation, building ZIPs from images) and the synthetic data set of the quickstart."""
