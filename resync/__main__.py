from resync.cli.commands import main

main()
