"""HTTP routers: thin adapters that parse, authorize, call a service and render."""
