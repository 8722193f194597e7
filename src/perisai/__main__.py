"""``python -m perisai``: the same command as the ``perisai`` script."""

from perisai.command import main

main()
