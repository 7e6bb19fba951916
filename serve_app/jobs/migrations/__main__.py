"""Developer entry point (no alembic.ini needed)::

    python -m serve_app.jobs.migrations heads
    python -m serve_app.jobs.migrations history
    python -m serve_app.jobs.migrations revision -m "add foo"    # then edit the new file

Commands that need a database connection are not wired here: use ``upgrade(url)``.
"""

from __future__ import annotations

import sys

from alembic.config import CommandLine

from . import alembic_config


def main(argv: list[str] | None = None) -> None:
    cli = CommandLine(prog="python -m serve_app.jobs.migrations")
    options = cli.parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    cli.run_cmd(alembic_config(), options)


if __name__ == "__main__":
    main()
