from perisai.cli import main

main()
