"""The operator's use cases, over the functions' shared code: what the `pixflare`
commands do (upload, set a backup destination, restore, add a custom domain).

Never deployed: nothing in ``lambdas/`` imports this package.
"""
