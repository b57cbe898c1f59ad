"""What every service shares to honour privacy requests: the policy, the records, the retention index."""
