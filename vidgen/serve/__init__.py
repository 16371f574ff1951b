"""`vidgen serve`: one long-lived process that keeps pipelines loaded and runs the jobs that
`vidgen t2v ...` (and the other generation commands), scripts and HTTP clients send it.

`wire` (where the server lives, how messages travel) and `client` are light: the CLI imports
them on every generation command, so they import neither torch nor diffusers. `server` (the
queue and the worker), `cache` (the kept pipelines) and `http` (the HTTP API, an extra) are
imported by `vidgen serve` alone.
"""
