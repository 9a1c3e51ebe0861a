"""The live dashboard: a page in the browser fed by Server-Sent Events from Redis.

:mod:`~streammood.dashboard.app` builds the Starlette app (``create_app``),
:mod:`~streammood.dashboard.hub` fans one Redis subscription out to bounded per-client queues,
:mod:`~streammood.dashboard.server` binds the socket and runs uvicorn; ``static/`` holds the page
(HTML, CSS, JavaScript, SVG), every asset shipped in the package.
"""
