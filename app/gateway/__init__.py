"""The subnet gateway: miners as a backend kind (selection, signed fan-out, scoring, records, weights)."""
