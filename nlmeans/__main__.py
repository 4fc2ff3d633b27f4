"""``python -m nlmeans``: the same command line as the ``nlmeans`` script."""

from nlmeans_cli.main import main

if __name__ == "__main__":
    main()
