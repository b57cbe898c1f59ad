"""Route: hand sales-ready leads to the right rep at once and enforce the contact SLA."""
