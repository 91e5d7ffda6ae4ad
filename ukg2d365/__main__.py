from ukg2d365.cli import main

main()
