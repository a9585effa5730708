"""``python -m geodetect`` is the ``geodetect`` command."""

if __name__ == "__main__":
    from geodetect.cli import main

    raise SystemExit(main())
