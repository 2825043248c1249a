"""`python -m archon_search` runs the command line."""

from archon_search.cli import app

app(prog_name="archon-search")
