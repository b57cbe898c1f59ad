"""Capture: the HTTP front door. Validates, derives the lead id, publishes to leads.interactions."""
