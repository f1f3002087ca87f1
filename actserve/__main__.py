from actserve.cli import main

main()
