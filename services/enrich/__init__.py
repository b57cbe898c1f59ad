"""Enrich: turns raw interactions into interactions about one known, clean lead."""
