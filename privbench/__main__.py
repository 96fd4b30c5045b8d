"""``python -m privbench`` runs the command line."""

from privbench.cli import main

if __name__ == "__main__":
    main()
