from prunelab.cli.main import main

main()
