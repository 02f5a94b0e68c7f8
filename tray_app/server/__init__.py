"""The HTTP server: the only aiohttp importer (routes, middlewares, error mapping, runner)."""
