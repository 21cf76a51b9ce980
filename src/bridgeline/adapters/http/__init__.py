"""The HTTP edge: Plivo-compatible PHLO routes, Bridgeline's extensions, and the OpenAPI description."""
