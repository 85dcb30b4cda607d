"""Application services: the layer between the HTTP handlers/workers and the pure domain."""
