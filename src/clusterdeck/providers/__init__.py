"""Infrastructure providers: one package per provider behind :class:`InfraProvider`.

Look one up with :func:`clusterdeck.providers.registry.get`; each provider package exposes a
``provider()`` factory.
"""
