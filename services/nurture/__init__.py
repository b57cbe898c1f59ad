"""Nurture: sequences that warm leads up and respect consent."""
