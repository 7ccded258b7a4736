"""``python -m integral_cli`` runs the command-line tool."""

from integral_cli.cli import main

if __name__ == "__main__":
    main()
