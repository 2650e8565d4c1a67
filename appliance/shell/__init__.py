"""The build shell: a terminal in a running build's server container.

sessions   open and close a terminal for a user (permission, the build's environment,
           the session's row and history line, production's recording): what the
           browser and SSH share
cast       production's recordings (asciicast v2) and their retention
websocket  the browser's side: an asyncio WebSocket server (the `websockets` library)
           with its checks (Origin, session cookie, one-time ticket) and the pump
control    a unix socket per running build, mounted into its server container, on which
           odoo-update and odoo-restart ask the daemon to act
actions    what those requests do (restart the server; update modules, on production
           through the production pipeline)
service    the thread and event loop the daemon runs all of it in
"""
