"""Golden-fixture parity checks: run every case of a pack against this implementation."""
