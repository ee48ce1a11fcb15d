"""The live service: an HTTP API on the store and portfolio the pipelines use (DESIGN §9)."""
