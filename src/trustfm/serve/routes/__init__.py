"""The service's routers, one per concern: inference (predict, explain), feedback, operations (model info,
health, readiness, metrics). :func:`trustfm.serve.app.create_app` includes them."""
