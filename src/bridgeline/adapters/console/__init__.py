"""The live console: an event hub fed by the conference service, an SSE stream, and a small page.

Part of the HTTP edge (its routes use the HTTP adapter's context and errors); the hub itself
knows nothing of HTTP.
"""
