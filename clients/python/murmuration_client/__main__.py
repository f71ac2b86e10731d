from .watch import main

main()
